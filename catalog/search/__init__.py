"""Catalogue search behind one interface: the embedded in-process index or pgstac (PostgreSQL)."""
