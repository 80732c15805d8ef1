"""Commune statistics (JSON and CSV) from the catalogue's stats artifacts."""
