"""The gateway as deployed: separate processes, SIGTERM, shared Redis budgets, a database outage, gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from imgclf.gateway.api_keys import create_key
from imgclf.storage.database import connect, session_scope
from imgclf.storage.models import Prediction
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]


def gateway_env(tmp_path: Path, registry: Path, database_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_")}
    env.update(
        IMGCLF_REGISTRY=str(registry),
        IMGCLF_MODEL_NAME="cats_dogs",
        IMGCLF_DATABASE_URL=database_url,
        IMGCLF_IMAGE_STORE_DIR=str(tmp_path / "images"),
        IMGCLF_SPOOL_DIR=str(tmp_path / "spool"),
        IMGCLF_SPOOL_RETRY_SECONDS="0.5",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update({f"IMGCLF_{k.upper()}": v for k, v in settings.items()})
    return env


def wait_until(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"gateway not ready in {timeout} s: {log.read_text()[-3000:]}")


@contextmanager
def gateway_process(command: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        wait_ready(url, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def imgclf_gateway(port: int) -> list[str]:
    return [sys.executable, "-m", "imgclf", "gateway", "--host", "127.0.0.1", "--port", str(port)]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def multipart(name: str, data: bytes, boundary: str = "imgclfboundary") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def count_predictions(database_url: str) -> int:
    engine = connect(database_url)
    try:
        with session_scope(engine) as session:
            return session.scalar(select(func.count()).select_from(Prediction)) or 0
    finally:
        engine.dispose()


def test_sigterm_finishes_the_request_in_flight_then_exits_0(cats_dogs_registry, photos, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    key = create_key(connect(database_url), "ci", "predict").secret
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(tmp_path, cats_dogs_registry, database_url)
    with gateway_process(imgclf_gateway(port), env, url, tmp_path / "gateway.log") as process:
        assert f"Gateway listening on {url}" in (tmp_path / "gateway.log").read_text()  # issue 19: say where
        body, content_type = multipart(*photos[0])
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body[:1000])
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert process.poll() is None  # still draining: the request is not finished
            sock.sendall(body[1000:])
            answer = b""
            while b'"predictions"' not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert process.wait(30) == 0
    assert count_predictions(database_url) == 1


def test_rate_limit_is_shared_by_two_gateway_processes_through_redis(
    cats_dogs_registry, photos, tmp_path, postgres_url, redis_url
):
    key = create_key(connect(postgres_url), "shared", "predict").secret  # a fresh key: its own bucket
    env = gateway_env(
        tmp_path, cats_dogs_registry, postgres_url, redis_url=redis_url, rate_limit_burst="4", rate_limit_per_minute="1"
    )
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with (
        gateway_process(imgclf_gateway(ports[0]), env, urls[0], tmp_path / "a.log"),
        gateway_process(imgclf_gateway(ports[1]), env, urls[1], tmp_path / "b.log"),
    ):
        statuses = []
        for i in range(8):  # alternate between the two processes
            response = httpx.post(
                urls[i % 2] + "/v1/predict", files=[("files", photos[0])], headers=bearer(key), timeout=30
            )
            statuses.append(response.status_code)
    assert statuses.count(200) == 4 and statuses.count(429) == 4, statuses
    assert statuses[:4] == [200, 200, 200, 200]


def test_database_outage_loses_no_prediction(cats_dogs_registry, photos, tmp_path, postgres_url):
    """PostgreSQL goes away under load and comes back: every answered prediction ends up stored."""
    from sqlalchemy.engine import make_url

    from tests.gateway.tcp_proxy import TcpProxy

    real = make_url(postgres_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    through_proxy = real.set(port=proxy.port).render_as_string(hide_password=False)
    key = create_key(connect(through_proxy), "load", "predict").secret
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(tmp_path, cats_dogs_registry, through_proxy, rate_limit_per_minute="1000000")
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            i = worker
            while not stop.is_set():
                name, data = photos[i % len(photos)]
                response = http.post("/v1/predict", files=[("files", (name, data))], headers=bearer(key))
                if response.status_code == 200:
                    answered.extend(p["id"] for p in response.json()["predictions"])
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                i += 1

    with gateway_process(imgclf_gateway(port), env, url, tmp_path / "gateway.log") as process:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answered) >= 10)
        before_outage = len(answered)
        proxy.cut()
        wait_until(lambda: list((tmp_path / "spool").glob("*.jsonl")))  # records go to the spool

        def database_seen_down() -> bool:
            return httpx.get(url + "/readyz", timeout=30).json()["checks"]["database"] != "ok"

        wait_until(database_seen_down)  # the gateway's health check notices within its interval
        readiness = httpx.get(url + "/readyz", timeout=30)
        listing = httpx.get(url + "/v1/predictions", headers=bearer(key), timeout=30)
        wait_until(lambda: len(answered) >= before_outage + 20)  # still answering
        during_outage = len(answered) - before_outage
        spooled = len(list((tmp_path / "spool").glob("*.jsonl")))
        proxy.restore()
        after_restore = len(answered)
        wait_until(lambda: len(answered) >= after_restore + 10)
        stop.set()
        for thread in threads:
            thread.join(30)
        deadline = time.monotonic() + 30
        while list((tmp_path / "spool").glob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    proxy.cut()
    assert not failures, failures[:3]
    # Still ready (it answers predictions); the database is reported beside it.
    assert readiness.status_code == 200 and readiness.json()["checks"]["database"].startswith("unavailable")
    assert listing.status_code == 503 and listing.json()["error"]["code"] == "database_unavailable"
    assert listing.headers["retry-after"] == "5"
    assert during_outage > 0 and spooled > 0  # answered while the database was away, records spooled
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    assert count_predictions(postgres_url) == len(answered) == len(set(answered))


def test_gunicorn_config_runs_two_workers_with_aggregated_metrics(cats_dogs_registry, photos, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    key = create_key(connect(database_url), "ci", "predict").secret
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(tmp_path, cats_dogs_registry, database_url, bind=f"127.0.0.1:{port}", workers="2")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    command = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "deploy" / "gunicorn.conf.py")]
    with gateway_process(command, env, url, tmp_path / "gunicorn.log") as process:
        time.sleep(3)  # let the second worker finish loading too
        for _ in range(6):
            with httpx.Client(base_url=url, timeout=30) as http:  # new connections spread over workers
                assert http.post("/v1/predict", files=[("files", photos[1])], headers=bearer(key)).status_code == 200
        text = httpx.get(url + "/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("imgclf_gateway_predictions_total{")
        )
        assert total == 6
        # Files are named <type>_<pid>.db: two worker pids means both workers report.
        workers = {path.stem.rsplit("_", 1)[1] for path in (tmp_path / "prometheus").glob("*.db")}
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert count_predictions(database_url) == 6
