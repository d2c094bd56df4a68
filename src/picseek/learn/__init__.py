"""Learning on top of a library's vectors: zero-shot scoring of labels (tags, classification)."""
