"""handlers service."""
