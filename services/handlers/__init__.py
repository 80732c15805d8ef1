"""AWS Lambda entry points, one module per service: ``services.handlers.<service>.handler`` for
``stac``, ``tiles`` (raster tiles, WMTS, WMS), ``vector``, ``downloads`` (with statistics) and
``viewer``. Each builds its app once per container, at import (cold start), and wraps it with Mangum
and the Powertools logger, metrics and tracer (:mod:`services.handlers.runtime`)."""
