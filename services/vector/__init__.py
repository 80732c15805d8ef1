"""Vector tiles (MVT) from the PMTiles artifacts, TileJSON, MapLibre styles and the raw files by range."""
