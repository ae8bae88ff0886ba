"""The database down or hung (issue 17): the gateway starts anyway, stays ready (it can answer
predictions), reports the database apart (``/readyz`` field, ``imgclf_gateway_database_up``), and a
database that stops answering costs at most ``IMGCLF_DATABASE_TIMEOUT_SECONDS`` of latency: records
go to the spool and reach the database when it answers again."""

from __future__ import annotations

import threading
import time

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from imgclf.storage.models import Prediction
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.gateway.tcp_proxy import TcpProxy
from tests.helpers import bearer, upload


def proxied(postgres_url: str) -> tuple[TcpProxy, str]:
    real = make_url(postgres_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    return proxy, real.set(port=proxy.port).render_as_string(hide_password=False)


def wait_until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def stored(postgres_url: str) -> int:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Prediction))
    finally:
        engine.dispose()


def test_the_gateway_starts_ready_without_its_database_and_catches_up(cats_dogs_registry, photos, tmp_path,
                                                                      postgres_url):  # fmt: skip
    proxy, url = proxied(postgres_url)
    proxy.cut()  # the database is down when the replica starts
    settings = gateway_settings(tmp_path, cats_dogs_registry, url, spool_retry_seconds=0.2, database_timeout_seconds=1)
    try:
        with running_gateway(settings) as gw:
            ready = gw.client.get("/readyz")
            assert ready.status_code == 200, ready.text  # it can answer predictions: keep it in the Service
            checks = ready.json()["checks"]
            assert checks["model"] == "ok" and checks["database"].startswith("unavailable")
            assert str(proxy.port) not in ready.text and "127.0.0.1" not in ready.text  # no connection details
            assert gw.metric("imgclf_gateway_database_up") == 0
            listing = gw.client.get("/v1/predictions", headers=bearer("ik_00000000_" + "0" * 32))
            assert listing.status_code == 503 and listing.json()["error"]["code"] == "database_unavailable"

            proxy.restore()  # the database comes back: migrations run, keys can be checked
            wait_until(lambda: gw.metric("imgclf_gateway_database_up") == 1)
            key = gw.key()
            answer = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(key))
            assert answer.status_code == 200, answer.text
            assert gw.client.get("/readyz").json()["checks"]["database"] == "ok"
    finally:
        proxy.cut()
    assert stored(postgres_url) == 1


def test_a_hung_database_costs_latency_not_availability(cats_dogs_registry, photos, tmp_path, postgres_url):
    proxy, url = proxied(postgres_url)
    settings = gateway_settings(tmp_path, cats_dogs_registry, url, spool_retry_seconds=0.2, database_timeout_seconds=1,
                                auth_cache_seconds=60, rate_limit_burst=100_000)  # fmt: skip
    answered: list[str] = []
    failures: list[str] = []
    slowest = [0.0]
    try:
        with running_gateway(settings) as gw:
            key = gw.key()
            files = upload(photos, 1)
            assert gw.client.post("/v1/predict", files=files, headers=bearer(key)).status_code == 200  # key cached
            proxy.pause()  # PostgreSQL stops answering (as under SIGSTOP): connections open, no replies
            stop = threading.Event()

            def client() -> None:
                with httpx.Client(base_url=gw.url, timeout=60) as http:
                    while not stop.is_set():
                        started = time.monotonic()
                        response = http.post("/v1/predict", files=files, headers=bearer(key))
                        if response.status_code != 200:
                            failures.append(response.text)
                            continue
                        slowest[0] = max(slowest[0], time.monotonic() - started)
                        answered.extend(p["id"] for p in response.json()["predictions"])

            threads = [threading.Thread(target=client) for _ in range(2)]
            for thread in threads:
                thread.start()
            time.sleep(4)
            started = time.monotonic()
            ready = gw.client.get("/readyz")
            readyz_seconds = time.monotonic() - started
            stop.set()
            for thread in threads:
                thread.join(60)
            during = len(answered)
            proxy.resume()
            wait_until(lambda: not list((tmp_path / "spool").glob("*.jsonl")) and gw.metric(
                "imgclf_gateway_database_up") == 1)  # fmt: skip
            assert ready.status_code == 200 and ready.json()["checks"]["database"].startswith("not answering")
            assert readyz_seconds < 1
    finally:
        proxy.cut()
    assert not failures, failures[:3]
    assert during >= 20, during  # it kept answering (before: every request waited for the database)
    assert slowest[0] < 1 + 1.5  # at most the timeout (1 s) on top of a normal answer
    assert stored(postgres_url) == 1 + len(answered)  # nothing lost
