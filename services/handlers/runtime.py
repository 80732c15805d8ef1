"""What every Lambda handler shares: GDAL settings for reading COGs on S3 and the Mangum + Powertools
wrapper.

GDAL options (serving-stack §2.6) are set in the environment before rasterio is imported, unless the
function's configuration already sets them: ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` avoids S3 LIST
calls, consecutive ranges are merged, the first 32 KiB of a COG are read at open, block and curl caches
are kept per container.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from ocsge.gdal_env import GDAL_ENV

# Everything textual goes back as text; PNG, MVT, zip… are base64-encoded by Mangum.
TEXT_MIME_TYPES = ["text/", "application/json", "application/geo+json", "application/xml",
                   "application/vnd.ogc.wms_xml", "application/vnd.ogc.se_xml", "application/javascript"]


def configure_gdal(env: dict[str, str] | None = None) -> None:
    for name, value in (env or GDAL_ENV).items():
        os.environ.setdefault(name, value)


def lambda_handler(app: ASGIApp, service: str, base_path: str = "/") -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler for ``app``: Mangum (lifespan off: apps initialise at import), structured logs with
    the request context, a request count and latency metric, and X-Ray tracing when enabled."""
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.metrics import MetricUnit
    from mangum import Mangum

    logger = Logger(service=f"ocsge-{service}")
    metrics = Metrics(namespace="OCSGE", service=service)
    tracer = Tracer(service=f"ocsge-{service}")
    from ocsge.settings import get_settings
    from services.security import SecurityHeadersMiddleware

    # the same security headers as the all-in-one server (services/app.py), set once per function
    secured = SecurityHeadersMiddleware(app, public_url=get_settings().public_url)
    asgi = Mangum(secured, lifespan="off", api_gateway_base_path=base_path, text_mime_types=TEXT_MIME_TYPES)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        response = asgi(event, context)
        status = int(response.get("statusCode", 500))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3)
        if status >= 500:
            metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        logger.info("request", extra={"path": event.get("rawPath") or event.get("path"), "status": status})
        return response

    handler.app = app  # type: ignore[attr-defined]
    return handler
