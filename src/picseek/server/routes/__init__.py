"""The API routes, one module per area: search, images (files, thumbnails, metadata, tags), library."""
