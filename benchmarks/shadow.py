"""Shadow traffic benchmark: gateway p50 latency with a shadow version on vs off, in one run.

The gateway (local backend, SQLite) serves version 1 of a registry holding two copies of the same
export; the ``shadow`` label on version 2 is set and removed between measurements (the gateway
picks the change up within a second, no restart), alternating off/on ROUNDS times per load.
Loads: closed loop as fast as possible (saturated: the shadow's model work competes for the same
cores) and paced (each client waits THINK ms after each answer: traffic below capacity, where the
shadow runs in the gaps).

    .venv/bin/python benchmarks/shadow.py --export REGISTRY/NAME --images ../shared/data/cats_dogs/validation
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.gateway import BATCHING, gateway_requests, started_gateway  # noqa: E402
from benchmarks.serving import http_load, latest_version  # noqa: E402
from imgclf.errors import RegistryError  # noqa: E402
from imgclf.registry.store import Registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--think-ms", type=float, default=40.0, help="pause per client in the paced runs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgclf-shadow-bench-"))
    base = work / "registry" / args.export.name
    for version in (1, 2):
        shutil.copytree(latest_version(args.export), base / str(version))
    registry = Registry(work / "registry")
    registry.promote(args.export.name, 1, force=True)
    batching = work / "batching.pbtxt"
    batching.write_text(BATCHING % 1)
    images = [p.read_bytes() for p in sorted(args.images.rglob("*.jpg"))[:64]]
    results: dict[tuple[str, str], list[dict]] = {}
    loads = [(f"c{c} saturated", c, 0.0) for c in args.concurrency]
    loads += [(f"c{c} paced {args.think_ms:g} ms", c, args.think_ms / 1000) for c in args.concurrency]
    with started_gateway("shadow", f"sqlite:///{work / 'bench.db'}", base, batching, work) as (port, key):
        requests = gateway_requests(images, key)
        for load, concurrency, think in loads:
            for _ in range(args.rounds):
                for shadow in ("off", "on"):
                    if shadow == "on":
                        registry.label(args.export.name, 2, "shadow")
                    else:
                        with contextlib.suppress(RegistryError):  # not labelled yet
                            registry.unlabel(args.export.name, "shadow")
                    time.sleep(3)  # the gateway re-reads the registry each second and loads version 2
                    result = http_load(port, requests, concurrency, 1.0, args.seconds, think)
                    results.setdefault((load, shadow), []).append(result)
                    print(load, shadow, result, flush=True)
    print("\n| load | shadow | req/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for (load, shadow), rows in results.items():
        mean = {k: statistics.mean(r[k] for r in rows) for k in ("throughput", "p50_ms", "p95_ms", "p99_ms")}
        errors = sum(r["errors"] for r in rows)
        print(f"| {load} | {shadow} | {mean['throughput']:.1f} | {mean['p50_ms']:.1f} | {mean['p95_ms']:.1f} | "
              f"{mean['p99_ms']:.1f} | {errors} |")  # fmt: skip
    for load, _, _ in loads:
        off = statistics.mean(r["p50_ms"] for r in results[(load, "off")])
        on = statistics.mean(r["p50_ms"] for r in results[(load, "on")])
        print(f"{load}: p50 with shadow / without = {on / off:.2f}")


if __name__ == "__main__":
    main()
