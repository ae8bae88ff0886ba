"""The API docs, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working without internet.

Their scripts, stylesheet and icon are served from this package under ``/docs-static/`` (vendored
from npm, pinned: ``imgclf/gateway/static/README.md``) instead of FastAPI's CDN defaults, and ReDoc
does not load Google Fonts. The assets are public library files: they need no key even with
``IMGCLF_DOCS_REQUIRE_KEY``, which puts ``/openapi.json``, ``/docs`` and ``/redoc`` behind any valid
key. The Swagger page carries the document inline, so it works when the page itself was fetched
with a key (a browser cannot add the header to the page's own fetch).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from imgclf.gateway.api_keys import SCOPES
from imgclf.gateway.dependencies import require_scope
from imgclf.gateway.errors import ApiError

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSET_PREFIX = "/docs-static"
OPENAPI_PATH = "/openapi.json"
# The only files served: URL name → (file under STATIC, content type).
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    "favicon-32x32.png": ("swagger-ui/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript; charset=utf-8"),
}
ASSET_CACHE = "public, max-age=3600"

assets = APIRouter(include_in_schema=False)


@assets.get(ASSET_PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(404, "not_found", "no such docs asset")
    path, media_type = ASSETS[name]
    return FileResponse(STATIC / path, media_type=media_type, headers={"Cache-Control": ASSET_CACHE})


def _root(request: Request) -> str:
    """The path prefix the gateway is served under (``--root-path`` behind a proxy), as FastAPI's docs use it."""
    return request.scope.get("root_path", "").rstrip("/")


def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def swagger(request: Request) -> HTMLResponse:
    static = _root(request) + ASSET_PREFIX
    return get_swagger_ui_html(
        openapi_url="",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png",
        swagger_ui_parameters={"spec": request.app.openapi()},
    )


def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=root + OPENAPI_PATH,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSET_PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSET_PREFIX}/favicon-32x32.png",
        with_google_fonts=False,
    )


def install(app: FastAPI, require_key: bool) -> None:
    """Serve the docs' assets, ``/docs`` and ``/redoc``; with ``require_key`` also ``/openapi.json``
    (the app was made with ``openapi_url=None``), the three behind any valid key."""
    app.include_router(assets)
    pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_scope(*SCOPES))] if require_key else [])
    if require_key:
        pages.add_api_route(OPENAPI_PATH, openapi, methods=["GET"])
    pages.add_api_route("/docs", swagger, methods=["GET"])
    pages.add_api_route("/redoc", redoc, methods=["GET"])
    app.include_router(pages)
