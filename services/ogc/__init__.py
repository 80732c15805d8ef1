"""OGC services (WMTS KVP + RESTful, WMS 1.3.0 / 1.1.1) over the raster layers of services.tiles."""
