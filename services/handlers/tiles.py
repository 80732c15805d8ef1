"""Lambda: raster tiles, WMTS and WMS (``/tiles/*``, ``/wmts*``, ``/wms*``)."""

from services.handlers.runtime import configure_gdal, lambda_handler

configure_gdal()

from services.tiles.app import create_app  # noqa: E402 - GDAL settings first

app = create_app()
handler = lambda_handler(app, "tiles")
