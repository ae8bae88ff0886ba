"""Exceptions to HTTP answers: one JSON shape for every error the gateway gives.

``{"error": {"code": "unsupported_format", "message": "...", "request_id": "..."}}``. ``code`` is
stable and machine-readable; ``message`` is for people. Model-backend trouble is 503 with
``Retry-After`` (never a 500); a bug is a 500 in the same shape, with details only in the log
(``imgclf.gateway.middleware``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from imgclf.errors import (
    DatabaseUnavailableError,
    ImgclfError,
    InvalidCursorError,
    NotFoundError,
    ServingError,
    UploadError,
)

log = logging.getLogger(__name__)

# TF Serving status codes from the model backend → (HTTP status, error code).
_BACKEND_STATUS = {
    "NOT_FOUND": (404, "model_version_not_found"),
    "INVALID_ARGUMENT": (422, "model_rejected_input"),
    "UNAVAILABLE": (503, "model_unavailable"),
    "RESOURCE_EXHAUSTED": (503, "model_overloaded"),
    "DEADLINE_EXCEEDED": (503, "model_timeout"),
    "CANCELLED": (503, "model_unavailable"),
    "ABORTED": (503, "model_unavailable"),
    "FAILED_PRECONDITION": (503, "model_not_ready"),
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


class ApiError(Exception):
    """An HTTP error raised by the gateway's own routes and dependencies."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def error_body(code: str, message: str, request_id: str) -> dict[str, dict[str, str]]:
    """The one error shape every gateway error uses."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id_of(request)), status_code=status, headers=headers)


def to_api_error(error: Exception, retry_after: int) -> ApiError:
    """The HTTP answer for a library exception."""
    retry = {"Retry-After": str(retry_after)}
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UploadError):
        return ApiError(error.status, error.code, error.message)
    if isinstance(error, ServingError):
        status, code = _BACKEND_STATUS.get(error.code, (502, "model_error"))
        return ApiError(status, code, f"model backend: {error.message}", retry if status == 503 else None)
    if isinstance(error, NotFoundError):
        return ApiError(404, "not_found", str(error))
    if isinstance(error, InvalidCursorError):
        return ApiError(400, "invalid_cursor", str(error))
    if isinstance(error, DatabaseUnavailableError | SQLAlchemyError):
        return ApiError(503, "database_unavailable", "the database does not answer; try again shortly", retry)
    if isinstance(error, ImgclfError):
        return ApiError(400, "bad_request", str(error))
    raise TypeError(f"not a mapped exception: {type(error).__name__}")


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, retry_after: int) -> None:
    async def mapped(request: Request, error: Exception) -> JSONResponse:
        api_error = to_api_error(error, retry_after)
        if api_error.status >= 500:
            log.warning("%s: %s", api_error.code, api_error.message, extra={"request_id": request_id_of(request)})
        return error_response(request, api_error.status, api_error.code, api_error.message, api_error.headers)

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        return error_response(request, error.status_code, code, str(error.detail), getattr(error, "headers", None))

    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "invalid_request", _validation_message(error))

    for kind in (ApiError, ImgclfError, SQLAlchemyError):
        app.add_exception_handler(kind, mapped)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
