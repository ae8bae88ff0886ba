"""Drift monitoring benchmark: false alarms, detection rates, and the time to check 10,000 predictions.

1. The validation split of DATA is split per class (seeded) into a reference half and a held-back
   half; RUN is exported with the reference half as its reference profile.
2. Pools of observed images (classified by the export, measured like the gateway does): the
   held-back half (in distribution), its darkened, blurred, rotated and JPEG-degraded copies, and
   images of other classes entirely (OTHER, e.g. flowers sent to the cats_dogs model).
3. For each pool and window size, WINDOWS random windows go through ``detect_drift`` with the
   default thresholds: the share flagged is the false-alarm rate (held back) or the detection rate.
4. Speed: 10,000 predictions written to a database (SQLite; PostgreSQL with --postgres), then
   ``imgclf monitor drift``'s job (read the window + every test) is timed.

    .venv/bin/python benchmarks/drift.py --run RUN_DIR [--data ../shared/data/cats_dogs]
        [--other ../shared/data/flowers/val] [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from imgclf.data.sources import load_dataset  # noqa: E402
from imgclf.export.inference import ExportedModel  # noqa: E402
from imgclf.export.reference import observe_images  # noqa: E402
from imgclf.monitoring.drift import detect_drift  # noqa: E402
from imgclf.monitoring.input_stats import STATISTICS  # noqa: E402
from imgclf.monitoring.jobs import ProfileCache, drift_check  # noqa: E402
from imgclf.monitoring.profile import ReferenceProfile  # noqa: E402
from imgclf.monitoring.simulation import SHIFTS, apply_shift, detection_rate  # noqa: E402
from imgclf.monitoring.window import Window  # noqa: E402
from imgclf.registry.publish import export_run  # noqa: E402
from imgclf.storage.database import connect  # noqa: E402
from imgclf.storage.models import Prediction, new_id  # noqa: E402
from imgclf.storage.predictions import insert_predictions  # noqa: E402


def split_reference(data: str, seed: int = 0) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Per class, half of the validation split for the reference, half held back."""
    dataset = load_dataset(data).subset("val")
    rng = np.random.default_rng(seed)
    reference, held_back = [], []
    for label in dataset.classes:
        paths = sorted(s.path for s in dataset.samples if s.label == label)
        order = rng.permutation(len(paths))
        half = len(paths) // 2
        reference += [(paths[i], label) for i in order[:half]]
        held_back += [(paths[i], label) for i in order[half:]]
    return reference, held_back


def write_manifest(rows: list[tuple[Path, str]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([str(p.resolve()), label] for p, label in rows)
    return path


def prediction_rows(pool: Window, count: int, model_name: str, version: int) -> list[dict]:
    """``count`` database rows cycling through the observed pool, one second apart."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        j = i % pool.size
        stats = {name: round(float(pool.statistics[name][j]), 4) for name in STATISTICS}
        rows.append(
            {
                "id": new_id(), "created_at": now - timedelta(seconds=count - i), "request_id": f"bench-{i}",
                "api_key_id": None, "image_sha256": f"{i:064x}", "image_bytes": 30000, "image_format": pool.formats[j],
                "width": int(stats["width"]), "height": int(stats["height"]), "model_name": model_name,
                "model_version": version, "label": pool.classes[int(pool.class_ids[j])],
                "confidence": float(pool.confidence[j]), "scores": {}, "threshold": None, "latency_ms": 10.0,
                "needs_review": bool(pool.confidence[j] < 0.7), "input_stats": stats,
                "embedding": [float(f"{v:.5g}") for v in pool.embeddings[j]],
            }
        )  # fmt: skip
    return rows


def time_drift_check(url: str, registry: Path, model_name: str, version: int, pool: Window, rows: int) -> dict:
    engine = connect(url)
    insert_predictions(engine, prediction_rows(pool, rows, model_name, version), skip_existing=False)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        report, _, window = drift_check(engine, ProfileCache(registry), model_name, version, window_size=rows)
        timings.append(time.perf_counter() - started)
    profile = ReferenceProfile.load(registry / model_name / str(version))
    started = time.perf_counter()
    detect_drift(profile, window)
    tests_only = time.perf_counter() - started
    with engine.begin() as connection:  # leave a shared database as it was
        connection.execute(delete(Prediction).where(Prediction.model_name == model_name))
    engine.dispose()
    return {
        "rows": window.size,
        "seconds_median": round(statistics.median(timings), 3),
        "seconds_all": [round(t, 3) for t in timings],
        "tests_only_seconds": round(tests_only, 3),
        "verdict": report.verdict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="trained run directory")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/cats_dogs"))
    parser.add_argument("--other", default=str(REPO.parent / "shared/data/flowers/val"))
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--speed-rows", type=int, default=10_000)
    parser.add_argument("--postgres", help="also time the check on this PostgreSQL URL (a scratch database)")
    parser.add_argument("--json", help="write all figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgclf-drift-bench-"))
    reference, held_back = split_reference(args.data)
    manifest = write_manifest(reference, work / "reference.csv")
    started = time.perf_counter()
    version_dir = export_run(args.run, work / "registry", "bench", reference_data=str(manifest))
    print(f"export with a {len(reference)}-image reference profile: {time.perf_counter() - started:.1f} s")
    model = ExportedModel.load(version_dir)
    profile = ReferenceProfile.load(version_dir)
    originals = [p.read_bytes() for p, _ in held_back]
    pools = {"in_distribution": observe_images(model, originals)}
    for shift in SHIFTS:
        pools[shift] = observe_images(model, [apply_shift(data, shift) for data in originals])
    other = sorted(s.path for s in load_dataset(args.other).samples)
    other = [other[i] for i in np.random.default_rng(1).permutation(len(other))[: len(originals)]]
    pools["other_classes"] = observe_images(model, [p.read_bytes() for p in other])

    results: dict = {"reference_images": profile.window.size, "pool_images": len(originals), "rates": {}}
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"\n{'pool':<16}" + "".join(f"{'window ' + str(s):>12}" for s in sizes) + "   tests that fired (largest window)"
    )
    for name, pool in pools.items():
        rates = [detection_rate(profile, pool, size, args.windows, seed=7) for size in sizes]
        results["rates"][name] = {str(r.window_size): {"rate": r.rate, "tests": r.tests} for r in rates}
        fired = ", ".join(f"{k} {v}" for k, v in sorted(rates[-1].tests.items(), key=lambda kv: -kv[1])[:4])
        print(
            f"{name:<16}"
            + "".join(f"{r.detected:>6}/{r.windows:<2} {r.rate:4.0%}"[-12:].rjust(12) for r in rates)
            + f"   {fired}"
        )

    print(f"\nspeed: drift check over {args.speed_rows} predictions (read + all tests), 3 runs")
    urls = {"sqlite": f"sqlite:///{work / 'speed.db'}", **({"postgresql": args.postgres} if args.postgres else {})}
    version = int(version_dir.name)
    speed = {
        name: time_drift_check(url, work / "registry", "bench", version, pools["in_distribution"], args.speed_rows)
        for name, url in urls.items()
    }
    for name, figures in speed.items():
        print(f"  {name}: {figures}")
    results["speed"] = speed
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
