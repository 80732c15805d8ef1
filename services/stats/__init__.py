"""stats service."""
