"""Gateways on loopback for the gateway tests: real uvicorn, real databases, a real export of real photos."""

from __future__ import annotations

import contextlib
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
from tests.conftest import tiny_config, write_csv


@pytest.fixture(scope="session")
def cats_dogs_registry(cats_dogs_dir, tmp_path_factory) -> Path:
    """A small CNN trained for one epoch on 48 real cats_dogs photos, exported as ``cats_dogs``.

    Its accuracy does not matter here; what matters is real JPEGs through a real export.
    """
    from imgclf.export.savedmodel import export_run
    from imgclf.modeling.training import train

    root = tmp_path_factory.mktemp("cats_dogs_model")
    rows = []
    for split, folder, count in (("train", "train", 16), ("val", "validation", 8)):
        for label in ("cats", "dogs"):
            rows += [[str(p), label, split] for p in sorted((cats_dogs_dir / folder / label).iterdir())[:count]]
    manifest = write_csv(root / "subset.csv", rows)
    run = train(tiny_config(manifest, root / "run", epochs=1, image_size=32), report=lambda _: None)
    registry = root / "registry"
    export_run(run.path, registry, "cats_dogs")
    return registry


@pytest.fixture(scope="session")
def photos(cats_dogs_dir) -> list[tuple[str, bytes]]:
    """Eight real validation photos (name, bytes), none used in training."""
    paths = []
    for label in ("cats", "dogs"):
        paths += sorted((cats_dogs_dir / "validation" / label).iterdir())[-4:]
    return [(p.name, p.read_bytes()) for p in paths]


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
