"""Gateway benchmark: what the gateway adds on top of the model server, in one run.

- model server alone: ``imgclf serve --enable-batching``, REST ``{"instances": [{"b64": ...}]}``,
  one image per request;
- the gateway with its local backend (the same batching engine, in process) and the prediction
  log in SQLite, then in PostgreSQL: one multipart upload per request with an API key, so every
  request is authenticated, rate-limited, validated (header checks and a check that the file is
  whole; only the model decodes), classified, stored in the image store and logged in the database.

Both use the same batching parameters and the same real JPEGs; clients are closed-loop asyncio
coroutines in this process (``benchmarks/serving.py``'s load generator).

The three servers are started once and measured in interleaved rounds (each round loads each
server in turn, in a rotated order), and every comparison is made within a round: on a shared
2-core machine the speed drifts by 10-20% over minutes, more than the difference measured.

    .venv/bin/python benchmarks/gateway.py --export REGISTRY/NAME --images DIR [--postgres URL] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
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


@contextlib.contextmanager
def started_model_server(export: Path, batching: Path) -> Iterator[int]:
    """``imgclf serve`` with batching on the export; yields its REST port."""
    rest_port, grpc_port = free_port(), free_port()
    command = [
        str(REPO / ".venv/bin/imgclf"), "serve", "--model-name", export.name, "--model-base-path", str(export),
        "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--host", "127.0.0.1",
        "--enable-batching", "--batching-parameters-file", str(batching), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command)
    try:
        wait_until_ready("127.0.0.1", rest_port, "/readyz", server)
        yield rest_port
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
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per server, round and concurrency")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--batch-threads", type=int, default=1)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="admin URL; '' skips")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.count]
    images = [f.read_bytes() for f in files]
    export = args.export.resolve()
    results: dict = {"images": len(images), "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        batching = work / "batching.pbtxt"
        batching.write_text(BATCHING % args.batch_threads)
        port = stack.enter_context(started_model_server(export, batching))
        servers = {"model_server": (port, rest_requests(images, export.name))}
        databases = {"gateway_sqlite": f"sqlite:///{work / 'bench.db'}"}
        if args.postgres:
            url, drop = postgres_database(args.postgres)
            stack.callback(drop)  # after the gateway using it has stopped
            databases["gateway_postgresql"] = url
        for name, url in databases.items():
            port, key = stack.enter_context(started_gateway(name, url, export, batching, work))
            servers[name] = (port, gateway_requests(images, key))
        names = list(servers)
        for concurrency in args.concurrency:
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    port, requests = servers[name]
                    result = http_load(port, requests, concurrency, args.warmup, args.seconds)
                    result["round"] = round_
                    results.setdefault(name, []).append(result)
                    print(name, result, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    summarize(results)


def summarize(results: dict) -> None:
    print("\n| server | concurrency | round | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    names = [n for n in ("model_server", "gateway_sqlite", "gateway_postgresql") if n in results]
    for name in names:
        for row in results[name]:
            print(
                f"| {name} | {row['concurrency']} | {row['round']} | {row['throughput']:.1f} | {row['p50_ms']:.1f} | "
                f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
            )
    alone = {(row["concurrency"], row["round"]): row for row in results["model_server"]}
    print("\nWithin each round (median, then every round):")
    for name in names[1:]:
        for concurrency in sorted({row["concurrency"] for row in results[name]}):
            rows = [row for row in results[name] if row["concurrency"] == concurrency]
            overheads = [row["p50_ms"] - alone[concurrency, row["round"]]["p50_ms"] for row in rows]
            ratios = [row["throughput"] / alone[concurrency, row["round"]]["throughput"] for row in rows]
            print(
                f"{name} c{concurrency}: p50 overhead {statistics.median(overheads):+.1f} ms "
                f"({' '.join(f'{o:+.1f}' for o in overheads)}), throughput {statistics.median(ratios):.2f}× "
                f"the model server alone ({' '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
