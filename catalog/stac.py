"""STAC versions and the extension schema URIs the catalogue writes, in one place.

Items and collections declare exactly these URIs in ``stac_extensions``; ``catalog.validate`` resolves
them to the schemas vendored in ``catalog/schemas/`` (offline).
"""

from __future__ import annotations

STAC_VERSION = "1.1.0"

PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
VERSION = "https://stac-extensions.github.io/version/v1.1.0/schema.json"

EXTENSIONS: dict[str, str] = {
    PROJECTION: "projection-v2.0.0.json",
    RASTER: "raster-v1.1.0.json",
    FILE: "file-v2.1.0.json",
    CLASSIFICATION: "classification-v2.0.0.json",
    PROCESSING: "processing-v1.2.0.json",
    VERSION: "version-v1.1.0.json",
}

PREFIX = "ocsge:"  # our own properties: ocsge:departement, ocsge:millesime, ocsge:campaign, ...

# Licence Ouverte 2.0 (Etalab), the licence of IGN's OCS GE and of what we derive from it.
LICENSE = "etalab-2.0"
LICENSE_URL = "https://www.etalab.gouv.fr/licence-ouverte-open-licence/"

MEDIA_JSON = "application/json"
MEDIA_GEOJSON = "application/geo+json"
