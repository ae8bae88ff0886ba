"""Model servers on loopback for the serving tests: real uvicorn, real gRPC, real SavedModels."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from imgclf.serving.options import ServerOptions
from imgclf.serving.server import ModelServer
from tests.serving.toy_models import write_toy_model


@dataclass
class RunningServer:
    server: ModelServer
    rest: httpx.Client
    channel: grpc.Channel

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}"

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (from the metrics page)."""
        total = 0.0
        for line in self.rest.get("/monitoring/prometheus/metrics").text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextlib.contextmanager
def running_server(**options) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    options = {"rest_api_port": 0, "grpc_port": 0, "host": "127.0.0.1", "shutdown_grace_seconds": 5, **options}
    server = ModelServer(ServerOptions(**options))
    server.start()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.http.started and time.monotonic() < deadline:
        time.sleep(0.02)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.rest_port}", timeout=30) as client:
            yield RunningServer(server, client, channel)
    finally:
        channel.close()
        server.begin_shutdown()
        thread.join(30)


def wait_for(condition, timeout: float = 60, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture(scope="session")
def toy_model_v1(tmp_path_factory) -> Path:
    """A toy SavedModel (y = 0.5·x + 2) written once; tests copy it into their own base paths."""
    return write_toy_model(tmp_path_factory.mktemp("toy_source"), 1, offset=2.0)


@pytest.fixture(scope="session")
def toy_model_v2(tmp_path_factory) -> Path:
    """The same toy with y = 0.5·x + 3 (so answers show which version served them)."""
    return write_toy_model(tmp_path_factory.mktemp("toy_source_v2"), 2, offset=3.0)


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory, toy_model_v1) -> Iterator[RunningServer]:
    """One server for the read-only protocol tests: model ``toy``, version 1, no batching."""
    import shutil

    base = tmp_path_factory.mktemp("toy_base") / "toy"
    base.mkdir()
    shutil.copytree(toy_model_v1, base / "1")
    with running_server(model_name="toy", model_base_path=base) as running:
        yield running
