"""The console's sessions, CSRF tokens and security headers.

A session is a cookie holding the signed (HMAC, ``itsdangerous``) id of the API key the person
signed in with, a CSRF token and the time it was made; never the key itself. It is ``HttpOnly``,
``SameSite=Strict``, ``Secure`` when the console is served over HTTPS, scoped to ``/ui`` and
expires ``IMGCLF_CONSOLE_SESSION_HOURS`` after sign-in (the signature carries the time, so an
old cookie is refused even if a browser keeps it). Every request re-checks the key: revoking it
ends its sessions within ``IMGCLF_AUTH_CACHE_SECONDS``.

Every state-changing request carries the session's CSRF token, as the form field ``csrf_token``
or the ``X-CSRF-Token`` header (htmx requests); the sign-in form, before there is a session, is
checked against a random token in a short-lived cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from imgclf.config import GatewaySettings

SESSION_COOKIE = "imgclf_console"
SIGN_IN_COOKIE = "imgclf_console_sign_in"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SIGN_IN_SECONDS = 3600  # how long a sign-in form stays usable

# No inline script or style anywhere: scripts and styles come only from /ui/static. Images are the
# console's own (the image store, drift figures); requests go back only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def load_secret(settings: GatewaySettings) -> bytes:
    """``IMGCLF_CONSOLE_SECRET``, else a random secret made once and kept (mode 0600) in the spool
    directory, so every worker process of this machine signs and checks with the same one."""
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value().encode()
    path = Path(settings.spool_dir) / ".console-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it this instant
            secret = path.read_bytes().strip()
            if secret:
                return secret
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it and restart") from None
    secret = secrets.token_urlsafe(48).encode()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
        handle.flush()
        os.fsync(handle.fileno())
    return secret


@dataclass(frozen=True)
class Session:
    key_id: str
    csrf: str


class Sessions:
    """Signs and reads session cookies; signs other console values (the review page's undo state)."""

    def __init__(self, secret: bytes, max_age_seconds: float) -> None:
        self._sessions = URLSafeTimedSerializer(secret, salt="imgclf-console-session")
        self._values = URLSafeSerializer(secret, salt="imgclf-console-value")
        self.max_age = int(max_age_seconds)

    def start(self, response: Response, request: Request, key_id: str) -> None:
        token = self._sessions.dumps({"k": key_id, "c": secrets.token_urlsafe(32)})
        _set_cookie(response, request, SESSION_COOKIE, token, self.max_age)
        response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)

    def read(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            data = self._sessions.loads(token, max_age=self.max_age)  # expired or forged: BadSignature
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("k"), str) or not isinstance(data.get("c"), str):
            return None
        return Session(data["k"], data["c"])

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

    def sign(self, value: Any) -> str:
        return self._values.dumps(value)

    def unsign(self, token: str) -> Any:
        """The signed value, or None if the token is not one this console signed."""
        try:
            return self._values.loads(token)
        except BadSignature:
            return None


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def sign_in_token(request: Request) -> str:
    """The sign-in form's CSRF token: the one its cookie holds (so two tabs both work), else a new one."""
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)


def remember_sign_in_token(response: Response, request: Request, token: str) -> None:
    _set_cookie(response, request, SIGN_IN_COOKIE, token, SIGN_IN_SECONDS)


def same_token(expected: str | None, presented: str | None) -> bool:
    return bool(expected) and bool(presented) and hmac.compare_digest(str(expected), str(presented))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"
