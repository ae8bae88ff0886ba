"""FastAPI dependencies: the process's ``Gateway`` and the calling API key (with its rate limit).

Keys are sent as ``Authorization: Bearer ik_...`` or ``X-API-Key: ik_...``. A missing or invalid
key is 401, a key without the route's scope 403, a key over its rate limit 429 with
``Retry-After`` (whole seconds, rounded up).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from imgclf.gateway.api_keys import KeyInfo
from imgclf.gateway.errors import ApiError
from imgclf.gateway.runtime import Gateway

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An imgclf API key (ik_...).")
bearer = HTTPBearer(auto_error=False, description="An imgclf API key (ik_...) as a bearer token.")


async def get_gateway(request: Request) -> Gateway:
    """The process's gateway (async: FastAPI would run a plain function in a worker thread)."""
    return request.app.state.gateway


def _check_key(gateway: Gateway, presented: str | None, scopes: tuple[str, ...]) -> KeyInfo:
    key = gateway.authenticator.authenticate(presented)
    if key is None:
        raise ApiError(401, "unauthorized", "a valid API key is required", {"WWW-Authenticate": "Bearer"})
    if not any(key.allows(scope) for scope in scopes):
        raise ApiError(403, "forbidden", f"this API key lacks the {' or '.join(map(repr, scopes))} scope")
    decision = gateway.rate_limiter.acquire(key.id)
    if not decision.allowed:
        gateway.metrics.rate_limited.inc()
        retry = max(1, math.ceil(decision.retry_after))
        raise ApiError(429, "rate_limited", f"rate limit exceeded; retry in {retry} s", {"Retry-After": str(retry)})
    return key


def presented_key(request: Request) -> str | None:
    """The API key a request presents: ``X-API-Key``, else ``Authorization: Bearer``."""
    headers = request.headers
    key = headers.get("x-api-key")
    if key is not None:  # present, even empty: it is the key presented (an empty one is refused)
        return key.strip()
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


async def authorize(request: Request, scopes: tuple[str, ...]) -> KeyInfo:
    """The calling key, checked for ``scopes`` and charged one rate-limit token.

    In the event loop when the key is cached and the limiter is in memory (the hot path of every
    request); in a worker thread when the database or Redis must be asked.
    """
    gateway: Gateway = request.app.state.gateway
    presented = presented_key(request)
    if gateway.authenticator.is_cached(presented) and not gateway.rate_limiter.blocking:
        return _check_key(gateway, presented, scopes)
    return await gateway.run_blocking(_check_key, gateway, presented, scopes)


def require_scope(*scopes: str) -> Callable[..., Awaitable[KeyInfo]]:
    """A dependency that authenticates the caller, checks it has one of ``scopes`` and takes a rate-limit token.

    The two security parameters put both ways of sending a key into the OpenAPI document;
    ``authorize`` reads the headers itself.
    """

    async def calling_key(
        request: Request,
        _api_key: str | None = Security(api_key_header),
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    ) -> KeyInfo:
        return await authorize(request, scopes)

    return calling_key


# For routes that read the key with ``authorize`` (the prediction route, to spare FastAPI's
# dependency solving on every upload): the same entry in the OpenAPI document as ``require_scope``.
KEY_SECURITY = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
