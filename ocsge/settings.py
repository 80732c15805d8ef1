"""One settings object, read from ``OCSGE_*`` environment variables (and a ``.env`` file if present).

Embedded defaults run everything on one machine: a local storage root, the embedded catalogue, one
server on loopback. The same variables switch a deployment to S3 and pgstac.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSGE_", env_file=".env", extra="ignore")

    storage_root: str = Field("data", description="Local folder or s3://bucket/prefix of every artifact")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (e.g. http://127.0.0.1:9000); None for AWS"
    )
    s3_region: str = "eu-west-3"
    presign_expires_s: int = Field(900, ge=1, le=7 * 24 * 3600)
    catalog_backend: Literal["embedded", "pgstac"] = "embedded"
    pgstac_dsn: str | None = None
    pgstac_secret_arn: str | None = Field(
        None, description="Secrets Manager ARN holding the pgstac password (the DSN carries none on AWS)"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="Base URL clients see (CloudFront); default http://host:port")
    trust_forwarded_headers: bool = Field(
        False, description="Build links from X-Forwarded-Host/-Proto (only behind a proxy that writes them, e.g. "
        "CloudFront's edge functions); never from Forwarded. Off: public_url, else the request's own Host"
    )
    asset_base_url: str | None = Field(
        None, description="Public base URL of the storage root for STAC asset hrefs (e.g. https://cdn…/data); "
        "default: {public_url}/files when serving, the storage URL otherwise"
    )
    render_budget_s: float = Field(
        20.0, gt=0, le=900, description="Time budget of one raster rendering request (tiles, WMTS, WMS, titiler "
        "routes): past it the request is answered 503 with Retry-After (services/tiles/budget.py)"
    )
    render_workers: int = Field(16, ge=1, le=256, description="Worker threads that render raster requests")
    seed: int = 42


@lru_cache
def get_settings() -> Settings:
    return Settings()
