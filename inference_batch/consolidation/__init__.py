"""The batch side of the consolidation loop: the errors layer and the corrected millésime, delivered and
ingested like IGN's (see export.py)."""
