"""Vendored STAC extension JSON schemas (data only; see README.md)."""
