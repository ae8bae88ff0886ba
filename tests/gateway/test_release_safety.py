"""The release path as a user walks it, under continuous load (issue 16), for the gateway's local backend
and for ``imgclf serve`` fed by ``models tfserving-config --watch`` behind a gRPC backend (TF Serving's
protocol, and the Open Inference Protocol):

drop a corrupt version, a version with no manifest and garbage for a graph, a half-copied version
that completes later and an unpromoted copy; promote to canary, roll the canary back, promote to
stable, roll stable back. No request may fail, and answers only ever come from the version that was
stable (1) or the one promoted (4), the latter never before its promotion.

``IMGCLF_RELEASE_DRILL_SECONDS`` sets how long each step runs under load (the benchmark figures in
benchmarks/RESULTS.md come from a longer run of these tests).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from imgclf.errors import RegistryError
from imgclf.gateway.api_keys import create_key
from imgclf.registry.store import Registry
from imgclf.registry.tfserving import watch_tfserving_config
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import bearer, upload
from tests.serving.conftest import running_server

DWELL = float(os.environ.get("IMGCLF_RELEASE_DRILL_SECONDS", "1.5"))
CLIENTS, KEYS = 4, 40


@dataclass
class Traffic:
    """Every request's start time and outcome (the answering version, or the error)."""

    answers: list[tuple[float, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def versions_since(self, started: float) -> list[int]:
        return [version for at, version in list(self.answers) if at >= started]

    def wait_for(self, condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not reached in {timeout} s; failures: {self.failures[:3]}"
            time.sleep(0.05)

    def settle_on(self, expected: set[int], count: int = 40) -> None:
        """Wait until ``count`` requests started after now were all answered by ``expected``."""
        now = time.monotonic()

        def settled() -> bool:
            recent = self.versions_since(now)
            return len(recent) >= count and set(recent[-count:]) <= expected

        self.wait_for(settled)
        self.wait_for(lambda: expected <= set(self.versions_since(now)) or len(expected) == 1)
        time.sleep(DWELL)


def load(url: str, keys: list[str], files, traffic: Traffic, worker: int) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=url, timeout=60) as client:
        i = worker
        while not traffic.stop.is_set():
            started = time.monotonic()
            try:
                response = client.post("/v1/predict", files=files, headers=bearer(keys[i % len(keys)]))
            except httpx.HTTPError as error:
                traffic.failures.append(f"{type(error).__name__}: {error}")
                continue
            if response.status_code == 200:
                traffic.answers.append((started, response.json()["predictions"][0]["model_version"]))
            else:
                traffic.failures.append(f"{response.status_code} {response.text[:200]}")
            i += CLIENTS


def release_drill(registry: Registry, traffic: Traffic) -> dict[str, float]:
    """The scripted sequence; returns when each promotion happened (for the checks afterwards)."""
    base = registry.root / "cats_dogs"
    good = base / "1"
    traffic.settle_on({1})

    # A corrupt export: a manifest, but the graph replaced by garbage.
    staging = base / ".incoming-2"
    shutil.copytree(good, staging)
    (staging / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 100)
    staging.rename(base / "2")
    # The reproduction: a directory with a garbage saved_model.pb and nothing else.
    (base / "3").mkdir()
    (base / "3" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    # Copied straight into place: the directory exists, the graph is half there.
    shutil.copytree(good, base / "4")
    whole = (good / "saved_model.pb").read_bytes()
    (base / "4" / "saved_model.pb").write_bytes(whole[: len(whole) // 3])
    traffic.settle_on({1})
    with pytest.raises(RegistryError, match="cannot serve"):
        registry.promote("cats_dogs", 4, to="canary", canary_share=0.5, force=True)
    (base / "4" / "saved_model.pb").write_bytes(whole)  # the copy completes
    # A later export nobody promoted: it serves nothing.
    staging = base / ".incoming-5"
    shutil.copytree(good, staging)
    staging.rename(base / "5")
    traffic.settle_on({1})

    times = {"canary": time.monotonic()}
    registry.promote("cats_dogs", 4, to="canary", canary_share=0.5, force=True)
    traffic.settle_on({1, 4})
    assert registry.rollback("cats_dogs").labels == {"stable": 1}  # ends the canary
    traffic.settle_on({1})
    registry.promote("cats_dogs", 4, force=True)
    traffic.settle_on({4})
    assert registry.rollback("cats_dogs").labels == {"stable": 1}
    traffic.settle_on({1})
    return times


def run_drill(gateway_url: str, engine, registry: Registry, photos) -> None:  # type: ignore[no-untyped-def]
    keys = [create_key(engine, f"client-{i}", "predict").secret for i in range(KEYS)]
    traffic = Traffic()
    files = upload(photos, 1)
    workers = [threading.Thread(target=load, args=(gateway_url, keys, files, traffic, w)) for w in range(CLIENTS)]
    for worker in workers:
        worker.start()
    try:
        times = release_drill(registry, traffic)
    finally:
        traffic.stop.set()
        for worker in workers:
            worker.join(60)
    answered = [version for _, version in traffic.answers]
    print(f"release drill: {len(answered)} answered, {len(traffic.failures)} failed; by version "
          f"{ {v: answered.count(v) for v in sorted(set(answered))} }")  # fmt: skip
    assert traffic.failures == [], traffic.failures[:5]
    assert set(answered) == {1, 4}, set(answered)
    assert not [at for at, version in traffic.answers if version == 4 and at < times["canary"]]


@pytest.fixture
def drill_registry(cats_dogs_registry, tmp_path) -> Registry:
    """The real export's registry (version 1, stable since its export) copied for this test."""
    shutil.copytree(cats_dogs_registry, tmp_path / "registry")
    registry = Registry(tmp_path / "registry")
    assert registry.state("cats_dogs").labels == {"stable": 1}
    return registry


@pytest.mark.slow
def test_release_drill_local_backend(drill_registry, photos, tmp_path):
    settings = gateway_settings(tmp_path, drill_registry.root, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                rate_limit_burst=100_000)  # fmt: skip
    with running_gateway(settings) as gw:
        run_drill(gw.url, gw.gateway.engine, drill_registry, photos)
        backend = gw.gateway.backend
        assert backend.is_available(1) and not any(backend.is_available(v) for v in (2, 3, 5))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "v2+grpc"])  # TF Serving's, and the Open Inference Protocol
def test_release_drill_model_server_fed_by_the_config_watcher(drill_registry, photos, tmp_path, protocol):
    out, stop = tmp_path / "tfs", threading.Event()
    watcher = threading.Thread(
        target=watch_tfserving_config, args=(drill_registry, out), kwargs={"interval": 0.3, "stop": stop}
    )
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while not (out / "models.config").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with running_server(
            model_config_file=out / "models.config",
            model_config_file_poll_wait_seconds=0.3,
            file_system_poll_wait_seconds=0.3,
            enable_batching=True,
        ) as server:
            settings = gateway_settings(
                tmp_path, drill_registry.root, f"sqlite:///{tmp_path / 'db.sqlite'}", rate_limit_burst=100_000,
                backend=f"{protocol}://127.0.0.1:{server.server.grpc_port}",
            )  # fmt: skip
            with running_gateway(settings) as gw:
                run_drill(gw.url, gw.gateway.engine, drill_registry, photos)
            config = (out / "models.config").read_text()
            assert "versions: 2" not in config and "versions: 3" not in config and "versions: 5" not in config
    finally:
        stop.set()
        watcher.join()
