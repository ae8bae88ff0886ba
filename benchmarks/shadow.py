"""Shadow traffic benchmark: gateway p50 latency with a shadow version on vs off, in one run.

The gateway (local backend, SQLite) serves version 1 of a registry holding two copies of the same
export; the ``shadow`` label on version 2 is set and removed between measurements (the gateway
picks the change up within a second, no restart), alternating off/on ROUNDS times per load.
Loads: closed loop as fast as possible (saturated: the shadow's model work competes for the same
cores) and paced (each client waits THINK ms after each answer: traffic below capacity, where the
shadow runs in the gaps). Two gateways one after the other: shadow work yielding to live requests
(the default, IMGCLF_SHADOW_QUIET_MS=20) and started at once (IMGCLF_SHADOW_QUIET_MS=0); ``--quiet-ms``
picks others.
Coverage: shadow predictions stored per answered request while the shadow was on.

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

import httpx

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
    parser.add_argument("--quiet-ms", nargs="+", default=["20", "0"], help="IMGCLF_SHADOW_QUIET_MS values to compare")
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
    loads = [(f"c{c} saturated", c, 0.0) for c in args.concurrency]
    loads += [(f"c{c} paced {args.think_ms:g} ms", c, args.think_ms / 1000) for c in args.concurrency]
    modes = {(f"yield {q} ms" if float(q) else "at once"): q for q in args.quiet_ms}
    results: dict[tuple[str, str, str], list[dict]] = {}
    for mode, quiet in modes.items():
        settings = {"IMGCLF_SHADOW_QUIET_MS": quiet}
        database = f"sqlite:///{work / f'bench-{quiet}.db'}"
        with started_gateway(f"shadow-{quiet}", database, base, batching, work, settings) as (port, key):
            requests = gateway_requests(images, key)
            for load, concurrency, think in loads:
                for _ in range(args.rounds):
                    for shadow in ("off", "on"):
                        set_shadow(registry, args.export.name, shadow == "on")
                        time.sleep(3)  # the gateway re-reads the registry each second and loads version 2
                        answered, mirrored = counts(port)
                        result = http_load(port, requests, concurrency, 1.0, args.seconds, think)
                        set_shadow(registry, args.export.name, False)
                        time.sleep(2)  # queued copies finish
                        now_answered, now_mirrored = counts(port)
                        result["coverage"] = (now_mirrored - mirrored) / max(1, now_answered - answered)
                        results.setdefault((mode, load, shadow), []).append(result)
                        print(mode, load, shadow, result, flush=True)
    print("\n| shadow work | load | shadow | req/s | p50 ms | p95 ms | p99 ms | coverage | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (mode, load, shadow), rows in results.items():
        keys = ("throughput", "p50_ms", "p95_ms", "p99_ms", "coverage")
        mean = {k: statistics.mean(r[k] for r in rows) for k in keys}
        errors = sum(r["errors"] for r in rows)
        coverage = f"{mean['coverage']:.0%}" if shadow == "on" else "-"
        print(f"| {mode} | {load} | {shadow} | {mean['throughput']:.1f} | {mean['p50_ms']:.1f} | "
              f"{mean['p95_ms']:.1f} | {mean['p99_ms']:.1f} | {coverage} | {errors} |")  # fmt: skip
    for mode in modes:
        for load, _, _ in loads:
            off = statistics.mean(r["p50_ms"] for r in results[(mode, load, "off")])
            on = statistics.mean(r["p50_ms"] for r in results[(mode, load, "on")])
            print(f"{mode}, {load}: p50 with shadow / without = {on / off:.2f}")


def set_shadow(registry: Registry, name: str, on: bool) -> None:
    if on:
        registry.label(name, 2, "shadow")
    else:
        with contextlib.suppress(RegistryError):  # not labelled
            registry.unlabel(name, "shadow")


def counts(port: int) -> tuple[float, float]:
    """Images answered (warm-up included) and shadow predictions made so far, from the gateway's metrics."""
    answered = mirrored = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("imgclf_gateway_routed_predictions_total{"):
            answered += float(line.rsplit(" ", 1)[1])
        elif line.startswith("imgclf_gateway_agreement_total{") and 'role="shadow"' in line:
            mirrored += float(line.rsplit(" ", 1)[1])
    return answered, mirrored


if __name__ == "__main__":
    main()
