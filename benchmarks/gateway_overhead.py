"""The gateway's own CPU per prediction request, without the model: where its overhead is cut.

The real app (middleware, routing, authentication, rate limit, multipart, validation, image store,
prediction log, metrics) is called in process as an ASGI app by 16 concurrent coroutines, with a
backend that answers at once with fixed scores (so the model's time, which dominates
``benchmarks/gateway.py``, is left out). Reported: process CPU time per request (all threads).
Compare code versions by running this on each, alternately, in one session:

    .venv/bin/python benchmarks/gateway_overhead.py --registry REGISTRY [--postgres ADMIN_URL] [--requests 4000]
    PYTHONPATH=/tmp/other-checkout/src .venv/bin/python benchmarks/gateway_overhead.py --registry REGISTRY
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gateway import postgres_database  # noqa: E402
from imgclf.config import GatewaySettings
from imgclf.gateway.api_keys import create_key
from imgclf.gateway.app import Gateway, create_app
from imgclf.gateway.backends import BackendAnswer, read_model_card
from imgclf.storage.database import connect

BOUNDARY = "imgclfbench0123456789"


class InstantBackend:
    """Answers every image at once with fixed scores, embeddings and statistics (no model)."""

    def __init__(self, model_name: str, version: int, classes: int) -> None:
        self.model_name, self.version, self.classes = model_name, version, classes

    def classify(self, images, version=None, label=None, background=False):  # type: ignore[no-untyped-def]
        n = len(images)
        scores = np.full((n, self.classes), 1 / self.classes, np.float32)
        scores[:, 0] += 0.5
        rng = np.random.default_rng(n)
        return BackendAnswer(
            self.model_name, version or self.version, scores, np.zeros(n, np.int64),
            rng.random((n, 32), np.float32), rng.random((n, 12), np.float32),
        )  # fmt: skip

    def is_available(self, version: int) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def multipart_body(image: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


async def post(app, body: bytes, key: str) -> None:  # type: ignore[no-untyped-def]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
        "headers": [
            (b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app,
    }  # fmt: skip
    delivered = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects

    statuses = []

    async def send(message) -> None:  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise RuntimeError(f"the gateway answered {statuses}")


async def load(app, bodies: list[bytes], key: str, requests: int, concurrency: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    for index in range(200):  # warm up
        await post(app, bodies[index % len(bodies)], key)
    queue = list(range(requests))

    async def client() -> None:
        while queue:
            await post(app, bodies[queue.pop() % len(bodies)], key)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (time.process_time() - cpu) / requests, (time.perf_counter() - wall) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, required=True, help="a registry with the model (for its model card)")
    parser.add_argument("--model", default="cats_dogs")
    parser.add_argument("--version", type=int, default=1, help="the version the stand-in backend answers as")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/cats_dogs/validation"))
    parser.add_argument("--postgres", help="admin URL: log to a scratch PostgreSQL database (default: SQLite file)")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        database = f"sqlite:///{work / 'bench.db'}"
        if args.postgres:
            database, drop = postgres_database(args.postgres)
            stack.callback(drop)
        settings = GatewaySettings(
            _env_file=None, registry=args.registry, model_name=args.model, database_url=database,
            image_store_dir=work / "images", spool_dir=work / "spool", rate_limit_per_minute=1e9,
            rate_limit_burst=10**7, drift_interval_seconds=0, log_level="warning",
        )  # fmt: skip
        engine = connect(database)
        key = create_key(engine, "gateway-overhead-benchmark", "predict").secret
        engine.dispose()
        classes = len(read_model_card(args.registry, args.model, args.version).classes)
        gateway = Gateway.from_settings(settings, backend=InstantBackend(args.model, args.version, classes))
        app = create_app(gateway=gateway)
        app.state.gateway = gateway
        photos = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[:64]
        bodies = [multipart_body(p.read_bytes()) for p in photos]
        try:
            cpu, wall = uvloop.run(load(app, bodies, key, args.requests, args.concurrency))
        finally:
            gateway.close()
    print(f"{args.requests} requests at concurrency {args.concurrency}: "
          f"{cpu * 1000:.3f} ms CPU per request, {wall * 1000:.3f} ms wall per request")  # fmt: skip


if __name__ == "__main__":
    main()
