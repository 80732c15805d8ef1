"""Settings of the consolidation API, read from ``OCSGE_CONSOLIDATION_*`` variables.

Embedded default: the SQLite store and an HS256 secret under the local storage root
(``{root}/consolidation/``). On AWS: a PostgreSQL DSN, and the OIDC issuer (Cognito user pool) whose RS256
tokens are checked against its JWKS, its groups giving the role.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsolidationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSGE_CONSOLIDATION_", env_file=".env", extra="ignore")

    dsn: str | None = Field(None, description="PostgreSQL DSN of the store; default: SQLite under the storage root")
    dsn_secret_arn: str | None = Field(
        None, description="Secrets Manager secret holding the DSN's password (on AWS: the DSN carries none)"
    )
    secret_file: str | None = Field(
        None, description="HS256 secret of local tokens; default {root}/consolidation/jwt-secret (created 0600)"
    )
    token_ttl_s: int = Field(8 * 3600, ge=60, le=366 * 24 * 3600, description="Lifetime of a login token")
    oidc_issuer: str | None = Field(
        None,
        description="OIDC issuer whose RS256 tokens are accepted (Cognito: "
        "https://cognito-idp.{region}.amazonaws.com/{pool id})",
    )
    oidc_audience: str | None = Field(
        None,
        description="Expected audience (Cognito: the app client id; checked "
        "against 'aud', or 'client_id' for access tokens)",
    )
    oidc_jwks_url: str | None = Field(None, description="JWKS URL; default {issuer}/.well-known/jwks.json")
    oidc_jwks_file: str | None = Field(None, description="JWKS as a local file (tests, air-gapped)")
    oidc_groups_claim: str = "cognito:groups"
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (on behind HTTPS)")
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_vertices: int = Field(5000, ge=4, le=1_000_000)
    writes_per_minute: int = Field(120, ge=1, description="Writes per account per minute")
    writes_per_minute_ip: int = Field(
        600, ge=1, description="Writes per client IP per minute (a whole office behind one address)"
    )
    logins_per_minute: int = Field(10, ge=1, description="Login attempts per IP per minute")


def store_dsn(settings: ConsolidationSettings) -> str | None:
    """The store's DSN, with its password read from the secret when one is named (fetched once per process)."""
    if settings.dsn and settings.dsn_secret_arn:
        return _dsn_with_secret(settings.dsn, settings.dsn_secret_arn)
    return settings.dsn


@lru_cache(maxsize=8)
def _dsn_with_secret(dsn: str, secret_arn: str) -> str:
    # keyed by the two strings: the settings object itself is not hashable
    from catalog.search.backends import dsn_with_secret_password

    return dsn_with_secret_password(dsn, secret_arn)


def get_consolidation_settings() -> ConsolidationSettings:
    return ConsolidationSettings()
