"""The web console under ``/ui``: review queue, prediction history, classify, models, monitoring.

Server-rendered (Jinja2 templates, htmx and one small script vendored under ``static/``), in the
gateway's own process and app, so it deploys with the service and needs no front-end build. People
sign in with an API key (``security``: signed session cookie, CSRF tokens, CSP); pages call the
gateway's library code (``imgclf.gateway.reviewing``, ``PredictionService.predict``, the registry,
monitoring jobs), never SQL of their own. Nothing here runs on an API request: the console adds
routes after the API's and no middleware.
"""

from __future__ import annotations

from fastapi import FastAPI

from imgclf.config import GatewaySettings
from imgclf.gateway.console.base import Console, SessionKeys, make_templates
from imgclf.gateway.console.security import Sessions, load_secret
from imgclf.gateway.runtime import Gateway

__all__ = ["install", "start"]


def install(app: FastAPI) -> None:
    """Add the console's routes to the gateway's app (after the API's)."""
    from imgclf.gateway.console import auth, classify, history, images, models, monitoring, review

    for module in (auth, images, review, history, classify, models, monitoring):
        app.include_router(module.router)


def start(app: FastAPI, gateway: Gateway, settings: GatewaySettings) -> None:
    """Build the console's per-process parts when the app starts (``app.state.console``)."""
    sessions = Sessions(load_secret(settings), settings.console_session_hours * 3600)
    app.state.console = Console(sessions, make_templates(), SessionKeys(gateway), {})
