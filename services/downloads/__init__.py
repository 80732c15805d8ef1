"""downloads service."""
