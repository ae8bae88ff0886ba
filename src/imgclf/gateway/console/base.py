"""What every console page shares: templates, the signed-in person, CSRF checks, error pages.

Routes use ``ConsoleRoute``: any error a page raises (an unknown prediction, a database that does
not answer, a refused form) becomes an HTML page with the right status instead of the API's JSON
body, and a request without a valid session is redirected to the sign-in page (htmx requests get
``HX-Redirect``, so the whole page moves there).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from imgclf.errors import DatabaseUnavailableError
from imgclf.gateway.api_keys import KeyInfo, key_by_id
from imgclf.gateway.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    PAGE_HEADERS,
    Sessions,
    same_token,
)
from imgclf.gateway.errors import to_api_error
from imgclf.gateway.multipart import FormPart, parse_form_data
from imgclf.gateway.runtime import Gateway

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class SignInRequired(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def _static_versions() -> dict[str, str]:
    """A short content hash per static file, added to its URL so browsers can cache it for long."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC.iterdir() if p.is_file()}


def _format_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is escaped unless a template says otherwise (none does)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = _static_versions()
    env.globals["static"] = lambda name: f"/ui/static/{name}?v={versions.get(name, '0')}"
    env.filters["time"] = _format_time
    env.filters["number"] = _number
    env.filters["percent"] = _percent
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return env


@dataclass(frozen=True)
class ConsoleUser:
    key: KeyInfo
    csrf: str

    def can(self, scope: str) -> bool:
        return self.key.allows(scope)

    @property
    def owner(self) -> str | None:
        """Whose predictions this person sees: everyone's with review (or admin), else their own."""
        return None if self.can("review") else self.key.id


def _database_error(error: Exception) -> bool:
    """Whether the API maps ``error`` to 503 database_unavailable (SQLAlchemy's errors)."""
    try:
        return to_api_error(error, 1).code == "database_unavailable"
    except TypeError:
        return False


class SessionKeys:
    """The keys sessions name, re-read from the database at most every ``cache_seconds`` (so a
    revocation bites within that); while the database is down the last answer is trusted."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.cache_seconds = gateway.settings.auth_cache_seconds
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def _lookup(self, key_id: str) -> KeyInfo | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            if not self.gateway.database.is_up():
                raise DatabaseUnavailableError("known to be down")
            info = key_by_id(self.gateway.engine, key_id)
        except Exception as error:
            if not isinstance(error, DatabaseUnavailableError) and not _database_error(error):
                raise
            if cached is not None:
                return cached[1]
            raise DatabaseUnavailableError("the database does not answer, so the session cannot be checked") from None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, info)
        return info

    async def get(self, key_id: str) -> KeyInfo | None:
        return await self.gateway.run_blocking(self._lookup, key_id)


@dataclass
class Console:
    """The console's per-process parts (``app.state.console``)."""

    sessions: Sessions
    templates: jinja2.Environment
    keys: SessionKeys
    caches: dict[str, Any]


def console_of(request: Request) -> Console:
    return request.app.state.console


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    user: ConsoleUser | None = None,
) -> HTMLResponse:
    console = console_of(request)
    body = console.templates.get_template(template).render(
        request_path=request.url.path, user=user, csrf=user.csrf if user else "", htmx=is_htmx(request), **context
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def redirect(url: str) -> Response:
    """A 303 to ``url`` (after a form post: the browser then GETs it)."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


async def form_fields(request: Request) -> FormData | list[FormPart]:
    """The body's fields: urlencoded forms through Starlette; multipart (uploads) with the gateway's
    own parser, the one ``POST /v1/predict`` uses (kept on the request, so it runs once)."""
    cached = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    content_type = request.headers.get("content-type", "")
    parsed: FormData | list[FormPart]
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        most = gateway_of(request).settings.max_images_per_request + 4  # the files and a few text fields
        parsed = parse_form_data(await request.body(), content_type, max_parts=most)
    else:
        parsed = await request.form()
    request.state.console_form = parsed
    return parsed


def form_value(fields: FormData | list[FormPart], name: str) -> str | None:
    if isinstance(fields, FormData):
        value = fields.get(name)
        return value if isinstance(value, str) else None
    for part in fields:
        if part.name == name and part.filename is None:
            return part.data.decode("utf-8", errors="replace")
    return None


def fields_list(fields: FormData | list[FormPart], name: str) -> list[str]:
    if isinstance(fields, FormData):
        return [v for v in fields.getlist(name) if isinstance(v, str)]
    return [p.data.decode("utf-8", errors="replace") for p in fields if p.name == name and p.filename is None]


class CsrfRefused(Exception):
    pass


class ScopeMissing(Exception):
    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


async def signed_in(request: Request) -> ConsoleUser:
    """The person signed in (a dependency). On a state-changing request the CSRF token is checked too."""
    console = console_of(request)
    session = console.sessions.read(request)
    key = await console.keys.get(session.key_id) if session is not None else None
    if session is None or key is None or not (key.allows("predict") or key.allows("review")):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/ui/")
    user = ConsoleUser(key, session.csrf)
    if request.method in UNSAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER) or form_value(await form_fields(request), CSRF_FIELD)
        if not same_token(user.csrf, presented):
            raise CsrfRefused
    request.state.console_user = user
    return user


def require(user: ConsoleUser, scope: str) -> None:
    if not user.can(scope):
        raise ScopeMissing(scope)


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The error as a page; for an htmx request, as the new content of the page's ``main``."""
    user = getattr(request.state, "console_user", None)
    response = render(request, "error.html", {"title": title, "message": message}, status=status, user=user)
    if is_htmx(request):
        response.headers["HX-Retarget"] = "#main"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


class ConsoleRoute(APIRoute):
    """Errors become HTML pages; a missing session becomes a redirect to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as needed:
                url = "/ui/sign-in?next=" + quote(needed.target, safe="/")
                if is_htmx(request):
                    return Response(status_code=204, headers={**PAGE_HEADERS, "HX-Redirect": url})
                return redirect(url)
            except CsrfRefused:
                message = (
                    "This form did not carry this session's CSRF token (it came from another page, or the "
                    "session changed since it was loaded). Reload the page and try again."
                )
                return _error_page(request, 403, "Request refused", message)
            except ScopeMissing as missing:
                message = f"Your API key lacks the {missing.scope} scope this page needs."
                return _error_page(request, 403, "Not allowed", message)
            except RequestValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', 'invalid')}"
                    for e in error.errors()[:5]
                )
                return _error_page(request, 422, "Invalid request", problems or "invalid request")
            except Exception as error:  # the API's mapping: ApiError, ImgclfError, the database's errors
                try:
                    api_error = to_api_error(error, gateway_of(request).settings.retry_after_seconds)
                except TypeError:  # not a mapped error: a bug, answered 500 by the middleware
                    raise error from None
                titles = {404: "Not found", 503: "Unavailable"}
                title = titles.get(api_error.status, "Error")
                response = _error_page(request, api_error.status, title, api_error.message)
                if "Retry-After" in api_error.headers:
                    response.headers["Retry-After"] = api_error.headers["Retry-After"]
                return response

        return console_handler
