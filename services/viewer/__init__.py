"""The web viewer (static MapLibre GL + pmtiles page), served at ``/``."""
