"""viewer service."""
