"""Who is asking: passwords (argon2), local tokens (HS256 JWT), OIDC tokens (RS256 JWT against a JWKS).

One path checks every bearer token: its ``alg`` header picks the verifier — HS256 with the local secret
(issuer ``ocsge-local``; the account must exist and be enabled, and its role is read from the store, so
disabling an account or changing its role takes effect at once), or RS256 with the OIDC issuer's JWKS
(issuer and audience checked; the role comes from the groups claim, e.g. Cognito's ``cognito:groups``, the
highest group that names a role). Nothing else is accepted (no ``none``, no HS256 signed with a public key).

A login token carries a ``csrf`` claim: the browser gets it in the login answer and must echo it in
``X-CSRF-Token`` on writes made with the cookie (a forged cross-site form cannot read it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ocsge.consolidation.model import Account, Role, Unauthenticated
from ocsge.consolidation.store import ConsolidationStore
from services.consolidation.settings import ConsolidationSettings

LOCAL_ISSUER = "ocsge-local"
LOCAL_AUDIENCE = "ocsge-consolidation"
_hasher = PasswordHasher()
# verified against when the account does not exist, so that a wrong username costs the same time
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hash_: str | None, password: str) -> bool:
    try:
        return _hasher.verify(hash_ or _DUMMY_HASH, password) and hash_ is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    username: str
    role: Role
    via: str  # "local" | "oidc"
    csrf: str | None = None  # the login token's CSRF value (cookie sessions)
    jti: str | None = None
    expires: int = 0


def load_secret(path: Path) -> bytes:
    """The HS256 secret, created (32 random bytes, mode 0600) on first use; an atomic create, so two
    processes starting together agree on one secret."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


class Authenticator:
    def __init__(self, store: ConsolidationStore, settings: ConsolidationSettings, secret_path: Path) -> None:
        self.store = store
        self.settings = settings
        self.secret_path = secret_path

    @cached_property
    def secret(self) -> bytes:
        return load_secret(self.secret_path)

    # issuing --------------------------------------------------------------------------------------

    def issue(self, account: Account, ttl_s: int | None = None, csrf: str | None = None) -> tuple[str, dict[str, Any]]:
        issued = int(time.time())
        claims: dict[str, Any] = {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": account.username,
            "role": account.role.label,
            "iat": issued,
            "exp": issued + (ttl_s or self.settings.token_ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if csrf is not None:
            claims["csrf"] = csrf
        return jwt.encode(claims, self.secret, algorithm="HS256"), claims

    def login(self, username: str, password: str) -> tuple[str, dict[str, Any], Account]:
        account = self.store.get_account(username)
        ok = verify_password(account.password_hash if account else None, password)
        if account is None or not ok or account.disabled:
            raise Unauthenticated("wrong username or password, or account disabled")
        token, claims = self.issue(account, csrf=secrets.token_urlsafe(24))
        return token, claims, account

    # checking -------------------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        alg = header.get("alg")
        if alg == "HS256":
            return self._local(token)
        if alg == "RS256" and self.settings.oidc_issuer:
            return self._oidc(token, header)
        raise Unauthenticated(f"tokens signed with {alg!r} are not accepted")

    def _local(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=LOCAL_AUDIENCE,
                issuer=LOCAL_ISSUER,
                options={"require": ["exp", "sub", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        account = self.store.get_account(str(claims["sub"]))
        if account is None or account.disabled:
            raise Unauthenticated("the token's account is unknown or disabled")
        if self.store.is_revoked(str(claims["jti"])):
            raise Unauthenticated("the token was revoked (logged out)")
        return Principal(account.username, account.role, "local", claims.get("csrf"), claims["jti"], int(claims["exp"]))

    @cached_property
    def _jwks(self) -> Any:
        if self.settings.oidc_jwks_file:
            return jwt.PyJWKSet.from_dict(json.loads(Path(self.settings.oidc_jwks_file).read_text()))
        url = self.settings.oidc_jwks_url or f"{self.settings.oidc_issuer.rstrip('/')}/.well-known/jwks.json"  # type: ignore[union-attr]
        return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)

    def _signing_key(self, token: str, header: dict[str, Any]) -> Any:
        source = self._jwks
        try:
            if isinstance(source, jwt.PyJWKSet):
                return source[str(header.get("kid"))].key
            return source.get_signing_key_from_jwt(token).key
        except (KeyError, jwt.PyJWTError) as exc:
            raise Unauthenticated(f"no key of the issuer signs this token ({exc})") from None

    def _oidc(self, token: str, header: dict[str, Any]) -> Principal:
        key = self._signing_key(token, header)
        try:
            # the audience is checked below: Cognito's access tokens name the app client in client_id, not aud
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=self.settings.oidc_issuer,
                options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        expected = self.settings.oidc_audience
        if expected:
            aud = claims.get("aud") or claims.get("client_id")
            auds = aud if isinstance(aud, list) else [aud]
            if expected not in auds:
                raise Unauthenticated("the token is not for this audience")
        groups = claims.get(self.settings.oidc_groups_claim) or []
        roles = [Role.parse(g) for g in groups if isinstance(g, str) and g.upper() in Role.__members__]
        if not roles:
            raise Unauthenticated("the token's groups name no role (contributor, interpreter, reviewer, admin)")
        username = str(claims.get("cognito:username") or claims.get("preferred_username") or claims["sub"])
        account = self.store.get_account(username)
        if account is not None and account.disabled:
            raise Unauthenticated("the token's account is disabled")
        return Principal(username, max(roles), "oidc", None, claims.get("jti"), int(claims["exp"]))
