"""Per-request plumbing as one pure ASGI middleware: request id, body limit, metrics, access log.

- ``X-Request-ID``: taken from the client when it is a sane token (≤ 64 of ``A-Z a-z 0-9 . _ : -``),
  otherwise generated; set on every response and on every log line written for the request.
- Body limit: a ``Content-Length`` over the limit is refused at once; a body without one (chunked)
  is counted while it streams in and refused as soon as it passes the limit, so nobody can make
  the gateway buffer an unbounded upload.
- Metrics: requests by route template, method and status; latency histogram by route.
- In-flight count (``LiveRequests``) from the first byte in to the last byte out: background work
  (shadow copies) waits for gaps in it.
- An unexpected exception becomes a 500 in the usual error shape (with ``X-Request-ID``) and a
  logged traceback; it never takes the process down. A client that hangs up before its request
  was read is counted and logged as 499 (nginx's "client closed request"), not as a server error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgclf.gateway.errors import error_body
from imgclf.gateway.metrics import GatewayMetrics
from imgclf.gateway.shadow import LiveRequests
from imgclf.logs import request_id_var

access_log = logging.getLogger("imgclf.gateway.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
CLIENT_CLOSED = 499  # nginx's "client closed request": counted apart from the server's own errors


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodyTimeout(Exception):
    """No byte of the request body arrived within the read timeout."""


class UploadBudgetFull(Exception):
    """Admitting the request's body would pass the process's upload budget."""


class UploadBudget:
    """Upload bytes held by the requests in flight (used from the event loop only: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, amount: int) -> bool:
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give_back(self, amount: int) -> None:
        self.used -= amount


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: GatewayMetrics,
        body_limit: int,
        live: LiveRequests,
        body_timeout: float = 20.0,
        bytes_in_flight: int | None = None,
    ) -> None:
        self.app, self.metrics, self.body_limit, self.live = app, metrics, body_limit, live
        self.body_timeout = body_timeout
        self.budget = UploadBudget(bytes_in_flight or 4 * body_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        self.live.enter()
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0
        reserved = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, reserved, body_done
            if body_done:  # after the body: only a disconnect can come, whenever it comes
                return await receive()
            try:  # asyncio.timeout, not wait_for: no extra task (and event-loop hop) per message
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.body_limit:
                    raise BodyTooLarge(self.body_limit)
                if received > reserved:  # a chunked body (no Content-Length): reserved as it arrives
                    if not self.budget.take(received - reserved):
                        raise UploadBudgetFull
                    reserved = received
            return message

        async def answer(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            body = error_body(code, message, request_id)
            response = JSONResponse(body, status_code=status, headers={"Connection": "close", **(extra or {})})
            await response(scope, receive, send_with_id)

        busy = ("upload_capacity", "the gateway holds as many uploads as it may; retry shortly", {"Retry-After": "1"})
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.body_limit:
                await answer(413, "request_too_large", BodyTooLarge(self.body_limit).detail)
            elif declared.isdigit() and not self.budget.take(int(declared)):
                await answer(503, *busy)
            else:
                reserved = int(declared) if declared.isdigit() else 0
                await self.app(scope, limited_receive, send_with_id)
        except BodyTimeout:
            if not responded:
                message = f"no part of the request body arrived for {self.body_timeout:g} s"
                await answer(408, "request_timeout", message)
        except UploadBudgetFull:
            if not responded:
                await answer(503, *busy)
        except ClientDisconnect:  # the client hung up before its request was read: nobody to answer
            status = CLIENT_CLOSED
            access_log.info("client closed the request before sending all of it")
        except Exception:  # a bug: answer in the error shape, with the request id, and log it
            access_log.exception("unhandled error")
            if not responded:
                body = error_body("internal_error", "internal error; the request id is in the server log", request_id)
                await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            self.budget.give_back(reserved)
            self.live.exit()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={"method": scope["method"], "path": scope["path"], "status": status,
                       "duration_ms": round(elapsed * 1000, 2)},
            )  # fmt: skip
            request_id_var.reset(token)
