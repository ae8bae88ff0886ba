"""The API docs behind a key (``IMGCLF_DOCS_REQUIRE_KEY``): ``/openapi.json``, ``/docs``, ``/redoc``.

Any valid key may read them. The Swagger page carries the document inline, so it works when the
page itself was fetched with a key (a browser cannot add the header to the page's own fetch).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from imgclf.gateway.api_keys import SCOPES
from imgclf.gateway.dependencies import require_scope

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_scope(*SCOPES))])


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="", title=request.app.title, swagger_ui_parameters={"spec": request.app.openapi()}
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=request.app.title)
