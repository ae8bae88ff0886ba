"""Signing in and out, the console's home and its static files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from starlette.responses import Response

from imgclf.gateway.console.base import (
    STATIC,
    ConsoleRoute,
    ConsoleUser,
    console_of,
    form_fields,
    form_value,
    gateway_of,
    redirect,
    render,
    signed_in,
)
from imgclf.gateway.console.security import (
    SIGN_IN_COOKIE,
    remember_sign_in_token,
    safe_next,
    same_token,
    sign_in_token,
)
from imgclf.gateway.errors import ApiError

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".md": "text/plain"}
STATIC_FILES = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in (".js", ".css")}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:
        raise ApiError(404, "not_found", "no such console file")
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=headers)


def home_page(user: ConsoleUser) -> str:
    return "/ui/review" if user.can("review") else "/ui/predictions"


@router.get("/")
async def home(user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    return redirect(home_page(user))


@router.get("")
async def home_without_slash() -> Response:
    return redirect("/ui/")


def sign_in_page(request: Request, target: str, error: str | None = None, status: int = 200) -> Response:
    token = sign_in_token(request)
    response = render(request, "sign_in.html", {"next": target, "error": error, "token": token}, status=status)
    remember_sign_in_token(response, request, token)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    return sign_in_page(request, safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await form_fields(request)
    target = safe_next(form_value(fields, "next"))
    if not same_token(request.cookies.get(SIGN_IN_COOKIE), form_value(fields, "csrf_token")):
        return sign_in_page(request, target, "The sign-in form expired or came from elsewhere; try again.", 403)
    presented = (form_value(fields, "api_key") or "").strip()
    gateway = gateway_of(request)
    key = await gateway.run_blocking(gateway.authenticator.authenticate, presented) if presented else None
    if key is None:
        return sign_in_page(request, target, "That API key is not valid (unknown or revoked).", 401)
    if not (key.allows("predict") or key.allows("review")):
        message = "That API key has none of the scopes the console uses (predict, review, admin)."
        return sign_in_page(request, target, message, 403)
    response = redirect(target if target != "/ui/" else ("/ui/review" if key.allows("review") else "/ui/predictions"))
    console_of(request).sessions.start(response, request, key.id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    response = redirect("/ui/sign-in")
    console_of(request).sessions.end(response)
    return response
