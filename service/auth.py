"""Optional API keys (PRERANK_API_KEY_HASHES): `Authorization: Bearer <key>` on /prerank,
/clusters and /metrics, and for the detail of /readyz. Settings hold only each key's sha256 digest;
a request's key is hashed and compared with every digest in constant time. One 401, whatever was
wrong (no header, another scheme, an unknown key), so a caller learns nothing from it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.state import ServiceState

# Keys are compared as unsalted sha256 digests, which only a random key makes safe to store: a
# key this short could be found from its digest by guessing.
MIN_KEY_CHARS = 24
UNAUTHORIZED_DETAIL = "unauthorized: send a valid API key as Authorization: Bearer <key>"
CHALLENGE = {"WWW-Authenticate": "Bearer"}
UNAUTHORIZED_RESPONSE: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid API key (`Authorization: Bearer <key>`)"}
}

# Parses the header and declares the scheme in the OpenAPI document; never answers by itself, so
# every failure gets the one 401 below.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="api_key",
    description="an API key whose sha256 digest is in PRERANK_API_KEY_HASHES",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def key_digest(key: str) -> str:
    """The sha256 hex digest of an API key, as PRERANK_API_KEY_HASHES stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_accepted(credentials: HTTPAuthorizationCredentials | None, digests: Sequence[str]) -> bool:
    """Whether the bearer key's digest is one of `digests`. Every digest is compared, in
    constant time, so the time taken says nothing about which digest came close."""
    offered = key_digest(credentials.credentials if credentials is not None else "")
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(offered, digest)
    return matched and credentials is not None


def unauthorized() -> HTTPException:
    return HTTPException(401, UNAUTHORIZED_DETAIL, headers=CHALLENGE)


async def require_api_key(request: Request, credentials: Credentials) -> None:
    """The dependency of every protected route (mounted only when keys are configured)."""
    state: ServiceState = request.app.state.prerank
    if not key_accepted(credentials, state.settings.api_key_hashes):
        raise unauthorized()


async def may_see_detail(request: Request, state: ServiceState) -> bool:
    """Whether this request may read /readyz's detail: always when no keys are configured, else
    only with a valid key."""
    digests = state.settings.api_key_hashes
    return not digests or key_accepted(await bearer_scheme(request), digests)


def read_key(text: str) -> str:
    """An API key as read from a stream (one line); ValueError when it is too short to be stored
    as an unsalted digest."""
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(
            f"an API key needs at least {MIN_KEY_CHARS} characters (got {len(key)}); make a "
            "random one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key
