"""vector service."""
