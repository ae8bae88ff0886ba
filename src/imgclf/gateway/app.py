"""The gateway's FastAPI app factory and the ``Gateway`` object that holds its parts.

``create_app(settings)`` builds everything from ``GatewaySettings`` when the app starts (one set
per worker process, so it works as a gunicorn factory: ``imgclf.gateway.app:create_app()``);
``create_app(gateway=...)`` serves parts built by the caller (tests, embedding).

Example:
    >>> app = create_app(GatewaySettings(registry=Path("registry"), model_name="cats_dogs"))
    >>> uvicorn.run(app, port=8000)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imgclf.config import GatewaySettings
from imgclf.gateway.errors import install_error_handlers
from imgclf.gateway.metrics import GatewayMetrics
from imgclf.gateway.middleware import RequestContextMiddleware
from imgclf.gateway.runtime import Gateway, resolve_model_name
from imgclf.gateway.schemas import ErrorBody
from imgclf.gateway.shadow import LiveRequests

__all__ = ["Gateway", "create_app", "resolve_model_name"]


def create_app(settings: GatewaySettings | None = None, gateway: Gateway | None = None) -> FastAPI:
    from imgclf.gateway import console
    from imgclf.gateway.routes import docs, health, predict, predictions, reviews

    settings = gateway.settings if gateway is not None else (settings or GatewaySettings())
    metrics = gateway.metrics if gateway is not None else GatewayMetrics()
    live_requests = gateway.live_requests if gateway is not None else LiveRequests()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = gateway is None
        app.state.gateway = (
            Gateway.from_settings(settings, metrics=metrics, live_requests=live_requests) if own else gateway
        )
        if settings.console_enabled:
            console.start(app, app.state.gateway, settings)
        try:
            yield
        finally:
            if own:
                app.state.gateway.close()

    app = FastAPI(
        title="imgclf gateway",
        summary="Classify images with the registry's model: API keys, rate limits, validation, a prediction log "
        "and a review queue.",
        version="1",
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
        docs_url=None,  # routes.docs serves /docs and /redoc with their assets from the package (offline)
        redoc_url=None,
        **({"openapi_url": None} if settings.docs_require_key else {}),
    )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        body_limit=settings.request_body_limit,
        live=live_requests,
        body_timeout=settings.body_read_timeout_seconds,
        bytes_in_flight=settings.bytes_in_flight_limit,
    )
    install_error_handlers(app, settings.retry_after_seconds)
    for module in (predict, predictions, reviews, health):
        app.include_router(module.router)
    docs.install(app, settings.docs_require_key)
    if settings.console_enabled:
        console.install(app)  # the web console under /ui: routes after the API's, no middleware
    return app
