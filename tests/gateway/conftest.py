"""Gateways on loopback for the gateway tests: real uvicorn, real databases, a real export of real photos."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from imgclf.config import GatewaySettings
from imgclf.gateway.api_keys import create_key
from imgclf.gateway.app import Gateway, create_app
from imgclf.gateway.backends import ModelBackend
from imgclf.gateway.http_limits import bounded_http_protocol
from imgclf.storage.database import connect


def gateway_settings(tmp_path: Path, registry: Path, database_url: str, **overrides) -> GatewaySettings:  # type: ignore[no-untyped-def]
    values = dict(
        registry=registry,
        model_name="cats_dogs",
        database_url=database_url,
        image_store_dir=tmp_path / "images",
        spool_dir=tmp_path / "spool",
        spool_retry_seconds=0.2,
        auth_cache_seconds=0,
    )
    values.update(overrides)
    return GatewaySettings(_env_file=None, **values)


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str
    client: httpx.Client

    def key(self, scopes: str = "predict", name: str = "tests") -> str:
        return create_key(self.gateway.engine, name, scopes).secret

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in self.client.get("/metrics").text.splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextlib.contextmanager
def running_gateway(settings: GatewaySettings, backend: ModelBackend | None = None) -> Iterator[RunningGateway]:
    """The gateway app under uvicorn on a free loopback port, in a thread of this process."""
    gateway = Gateway.from_settings(settings, backend=backend)
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(gateway=gateway),
        log_config=None,
        lifespan="on",
        http=bounded_http_protocol(settings.max_header_bytes),  # as imgclf gateway and the gunicorn worker
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield RunningGateway(gateway, url, client)
    finally:
        server.should_exit = True
        thread.join(30)
        gateway.close()


@pytest.fixture
def parts(tmp_path):  # type: ignore[no-untyped-def]
    card = tmp_path / "registry" / "pets" / "7" / "assets.extra" / "model_card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"classes": ["cat", "dog", "fox"], "decision": {"threshold": None}}))
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield tmp_path, engine
    engine.dispose()
