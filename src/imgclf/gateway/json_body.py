"""A route class for small JSON bodies that takes the body as JSON whatever Content-Type it declares.

``curl -d '{"label": "dogs"}'`` declares ``application/x-www-form-urlencoded``; FastAPI parses a
body as JSON only under ``application/json`` (or ``*+json``) and would answer 422 "Input should be a
valid dictionary", which does not say why. Under any other Content-Type (or none) a body that parses
as JSON is handed to FastAPI as JSON, so validation, its 422s and the OpenAPI schema stay FastAPI's;
a body that does not parse is a 415 naming the Content-Type. A body declared as JSON is left to
FastAPI (bad JSON stays a 422).

Accepting JSON under a non-JSON type is safe here: the gateway's keys travel in headers
(``Authorization``, ``X-API-Key``), which a cross-site form cannot send.

Example:
    >>> router = APIRouter(route_class=AnyContentTypeJsonRoute)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers

from imgclf.gateway.errors import ApiError


def is_json_type(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, as FastAPI decides (parameters ignored)."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class _JsonRequest(Request):
    """The request as FastAPI should parse it: declared as JSON, its body already read."""

    def __init__(self, request: Request, body: bytes) -> None:
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        super().__init__({**request.scope, "headers": [*headers, (b"content-type", b"application/json")]},
                         request.receive)  # fmt: skip
        self._read = body

    async def body(self) -> bytes:
        return self._read


class AnyContentTypeJsonRoute(APIRoute):
    """An ``APIRoute`` whose JSON body may come under any Content-Type (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # no body: nothing to do
            return handler

        async def lenient(request: Request) -> Response:
            content_type = Headers(scope=request.scope).get("content-type", "")
            if is_json_type(content_type):
                return await handler(request)
            body = await request.body()
            if not body:
                return await handler(request)  # FastAPI's 422: the body is required
            try:
                json.loads(body)
            except ValueError:  # not JSON (UnicodeDecodeError included)
                media = content_type.split(";")[0].strip()[:100] or "none"
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    f"send the body as JSON with Content-Type: application/json (got Content-Type {media} "
                    "and a body that is not JSON)",
                ) from None
            return await handler(_JsonRequest(request, body))

        return lenient
