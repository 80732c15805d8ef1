"""Lambda: vector tiles from PMTiles, TileJSON, styles, raw files by range (``/vector/*``)."""

from services.handlers.runtime import lambda_handler
from services.vector.app import create_app

app = create_app()
handler = lambda_handler(app, "vector")
