"""Per-département download archives: listing with sizes and checksums, files or presigned URLs."""
