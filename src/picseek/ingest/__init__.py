"""Getting images in: scanning sources, safe decoding, and the batched decode -> embed -> store pipeline."""
