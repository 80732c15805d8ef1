"""GDAL settings for reading COGs on S3 (../shared/reference/serving-stack.md §2.6): set by the service
Lambdas at cold start (``services.handlers.runtime``) and in their configuration by the CDK app (``infra``).

Lambdas read COGs straight from S3 with ``/vsis3/``: these settings avoid S3 LIST calls on open
(``EMPTY_DIR``), size the first read to a COG header, merge adjacent ranges and cache blocks across the
requests a warm Lambda serves. ``GDAL_HTTP_MULTIPLEX``/``GDAL_HTTP_VERSION=2`` are left out on purpose:
they only help behind an HTTP/2 front end such as CloudFront, and the Lambdas talk to S3 (HTTP/1.1).
"""

from __future__ import annotations

GDAL_ENV: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_CACHEMAX": "200",
    "CPL_VSIL_CURL_CACHE_SIZE": "200000000",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "5000000",  # per file handle
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
}
