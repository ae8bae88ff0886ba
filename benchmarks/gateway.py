"""Gateway benchmark: what the gateway adds on top of the model server, in one run.

- model server alone: ``imgclf serve --enable-batching``, REST ``{"instances": [{"b64": ...}]}``,
  one image per request;
- the gateway with its local backend (the same batching engine, in process) and the prediction
  log in SQLite, then in PostgreSQL: one multipart upload per request with an API key, so every
  request is authenticated, rate-limited, validated (header checks and a check that the file is
  whole; only the model decodes), classified, stored in the image store and logged in the database.

Both use the same batching parameters and the same real JPEGs; clients are closed-loop asyncio
coroutines in this process (``benchmarks/serving.py``'s load generator).

    .venv/bin/python benchmarks/gateway.py --export REGISTRY/NAME --images DIR [--postgres URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import (  # noqa: E402
    BATCHING,
    free_port,
    http_load,
    multipart_requests,
    rest_requests,
    stop,
    wait_until_ready,
)


def gateway_requests(images: list[bytes], key: str) -> list[bytes]:
    return multipart_requests(images, "/v1/predict", "files", f"Authorization: Bearer {key}\r\n")


def measure(port: int, requests: list[bytes], args: argparse.Namespace, name: str, results: dict) -> None:
    for concurrency in args.concurrency:
        result = http_load(port, requests, concurrency, args.warmup, args.seconds)
        results.setdefault(name, []).append(result)
        print(name, result, flush=True)


def run_model_server(
    export: Path, batching: Path, args: argparse.Namespace, images: list[bytes], results: dict
) -> None:
    rest_port, grpc_port = free_port(), free_port()
    command = [
        str(REPO / ".venv/bin/imgclf"), "serve", "--model-name", export.name, "--model-base-path", str(export),
        "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--host", "127.0.0.1",
        "--enable-batching", "--batching-parameters-file", str(batching), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command)
    try:
        wait_until_ready("127.0.0.1", rest_port, "/readyz", server)
        measure(rest_port, rest_requests(images, export.name), args, "model_server", results)
    finally:
        stop(server)


@contextlib.contextmanager
def started_gateway(
    name: str, database_url: str, export: Path, batching: Path, work: Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[int, str]]:
    """``imgclf gateway`` in a subprocess on the export's registry; yields (port, API key).

    ``settings``: extra IMGCLF_* variables (any from the calling environment are dropped).
    """
    from imgclf.gateway.api_keys import create_key
    from imgclf.storage.database import connect

    engine = connect(database_url)
    key = create_key(engine, "benchmark", "predict").secret
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        IMGCLF_REGISTRY=str(export.parent),
        IMGCLF_MODEL_NAME=export.name,
        IMGCLF_DATABASE_URL=database_url,
        IMGCLF_IMAGE_STORE_DIR=str(work / f"images-{name}"),
        IMGCLF_SPOOL_DIR=str(work / f"spool-{name}"),
        IMGCLF_BATCHING_PARAMETERS_FILE=str(batching),
        IMGCLF_RATE_LIMIT_PER_MINUTE="100000000",
        IMGCLF_RATE_LIMIT_BURST="1000000",
        IMGCLF_LOG_LEVEL="warning",
    )
    env.update(settings or {})
    command = [str(REPO / ".venv/bin/imgclf"), "gateway", "--host", "127.0.0.1", "--port", str(port)]
    gateway = subprocess.Popen(command, env=env)
    try:
        wait_until_ready("127.0.0.1", port, "/readyz", gateway)
        yield port, key
    finally:
        stop(gateway)


def run_gateway(
    name: str,
    database_url: str,
    export: Path,
    batching: Path,
    args: argparse.Namespace,
    images: list[bytes],
    work: Path,
) -> list[dict]:
    results: dict = {}
    with started_gateway(name, database_url, export, batching, work) as (port, key):
        measure(port, gateway_requests(images, key), args, name, results)
    return results[name]


def postgres_database(admin_url: str) -> tuple[str, callable]:  # type: ignore[valid-type]
    import psycopg

    name = f"imgclf_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="REGISTRY/NAME with integer versions")
    parser.add_argument("--images", type=Path, required=True, help="folder of JPEGs (searched recursively)")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--batch-threads", type=int, default=1)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="admin URL; '' skips")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.count]
    images = [f.read_bytes() for f in files]
    results: dict = {"images": len(images)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        batching = work / "batching.pbtxt"
        batching.write_text(BATCHING % args.batch_threads)
        run_model_server(args.export.resolve(), batching, args, images, results)
        results["gateway_sqlite"] = run_gateway(
            "gateway_sqlite", f"sqlite:///{work / 'bench.db'}", args.export.resolve(), batching, args, images, work
        )
        if args.postgres:
            url, drop = postgres_database(args.postgres)
            try:
                results["gateway_postgresql"] = run_gateway(
                    "gateway_postgresql", url, args.export.resolve(), batching, args, images, work
                )
            finally:
                drop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    summarize(results)


def summarize(results: dict) -> None:
    print("\n| server | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    names = [n for n in ("model_server", "gateway_sqlite", "gateway_postgresql") if n in results]
    for name in names:
        for row in results[name]:
            print(
                f"| {name} | {row['concurrency']} | {row['throughput']:.1f} | {row['p50_ms']:.1f} | "
                f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
            )
    alone = {row["concurrency"]: row for row in results["model_server"]}
    print()
    for name in names[1:]:
        for row in results[name]:
            base = alone[row["concurrency"]]
            print(
                f"{name} c{row['concurrency']}: p50 overhead {row['p50_ms'] - base['p50_ms']:+.1f} ms, "
                f"throughput {row['throughput'] / base['throughput']:.2f}× the model server alone"
            )


if __name__ == "__main__":
    main()
