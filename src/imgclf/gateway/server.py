"""``imgclf gateway``: the app under uvicorn in one process (development and small deployments).

Production runs several workers with gunicorn instead (``deploy/gunicorn.conf.py``). Either way
SIGTERM stops accepting connections, lets in-flight requests finish (up to
``shutdown_grace_seconds``), finishes queued model work, writes what the spool holds if the
database answers, and exits 0.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from imgclf.config import GatewaySettings
from imgclf.errors import ConfigError
from imgclf.gateway.app import Gateway, create_app
from imgclf.gateway.http_limits import bounded_http_protocol
from imgclf.logs import configure_json_logging
from imgclf.uvicorn_server import DrainingServer


def run_gateway(
    settings: GatewaySettings,
    sock: socket.socket | None = None,
    announce: Callable[[str], object] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. ``sock``: an already bound listening socket (else host and port);
    ``announce`` is called with the base URL once the gateway is ready to accept connections."""
    configure_json_logging(settings.log_level)
    if sock is None:
        try:
            sock = socket.create_server((settings.host, settings.port))
        except OSError as error:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port} ({error.strerror})") from None
    gateway = Gateway.from_settings(settings)  # before serving: a bad setting is one error line, not a traceback
    config = uvicorn.Config(
        create_app(gateway=gateway),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        log_config=None,
        http=bounded_http_protocol(settings.max_header_bytes),
    )
    if announce is not None:
        host, port = sock.getsockname()[:2]
        announce(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")
    try:
        DrainingServer(config).run(sockets=[sock])
    finally:
        gateway.close()
