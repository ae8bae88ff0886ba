"""The retraining loop end to end on real photos (issue 20): how much reviewed traffic it takes and
what it buys.

v1 is trained on a small part of a dataset (``--train-per-class`` images per class, plus
``--val-per-class`` validation images) and served by the gateway (SQLite, the local backend,
audit rate ``--audit-rate``). ``--traffic-per-class`` held-back images per class are classified;
every queued item (uncertain, out of distribution or audit) is reviewed with its true label;
``imgclf retrain`` builds v2. Reported: the reviews it took, the gate's accuracy of v1 and v2 on the
fixed evaluation set (v1's validation split + held-out audit items), and the wall time of
``imgclf retrain`` (planning, training, evaluation, export, gate).

    .venv/bin/python benchmarks/retrain_loop.py --data ../shared/data/cats_dogs --weights \\
        ../shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _files(root: Path, folder: str, start: int, count: int) -> list[tuple[Path, str]]:
    return [
        (path, label)
        for label in sorted(p.name for p in (root / folder).iterdir() if p.is_dir())
        for path in sorted((root / folder / label).iterdir())[start : start + count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A dataset with train/ and validation/ folders.")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--train-per-class", type=int, default=10)
    parser.add_argument("--val-per-class", type=int, default=25)
    parser.add_argument("--traffic-per-class", type=int, default=150)
    parser.add_argument("--audit-rate", type=float, default=0.1)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    from imgclf.config import TrainConfig
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run
    from imgclf.registry.store import Registry
    from imgclf.retraining.retrain import retrain
    from imgclf.retraining.reviewed import reviewed_images
    from imgclf.storage.database import connect
    from imgclf.storage.image_store import ImageStore
    from tests.conftest import write_csv
    from tests.gateway.conftest import gateway_settings, running_gateway
    from tests.helpers import bearer

    args.data = args.data.resolve()
    work = Path(tempfile.mkdtemp(prefix="retrain-loop-"))
    val_folder = "validation" if (args.data / "validation").is_dir() else "val"
    rows = [[str(p), label, "train"] for p, label in _files(args.data, "train", 0, args.train_per_class)]
    rows += [[str(p), label, "val"] for p, label in _files(args.data, val_folder, 0, args.val_per_class)]
    config = TrainConfig(
        data=str(write_csv(work / "v1.csv", rows)), out=str(work / "v1"), model="mobilenet_v2", alpha=0.35,
        weights=str(args.weights), image_size=args.image_size, epochs=args.epochs, fine_tune_epochs=0,
    )  # fmt: skip
    started = time.perf_counter()
    run = train(config, report=lambda _: None)
    v1_seconds = time.perf_counter() - started
    registry_dir = work / "registry"
    export_run(run.path, registry_dir, "model")
    database_url = f"sqlite:///{work / 'db.sqlite'}"
    settings = gateway_settings(
        work, registry_dir, database_url, model_name="model", review_audit_rate=args.audit_rate,
        rate_limit_burst=100_000, rate_limit_per_minute=100_000,
    )  # fmt: skip
    traffic = _files(args.data, "train", 200, args.traffic_per_class)
    truth: dict[str, str] = {}
    with running_gateway(settings) as running:
        key, reviewer = running.key("predict"), running.key("review")
        failed = 0
        for start in range(0, len(traffic), 8):
            batch = traffic[start : start + 8]
            files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p, _ in batch]
            answer = running.client.post("/v1/predict", files=files, headers=bearer(key))
            if answer.status_code != 200:
                failed += 1
                continue
            for prediction, (_, label) in zip(answer.json()["predictions"], batch, strict=True):
                truth[prediction["id"]] = label
        reasons: Counter[str] = Counter()
        cursor = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = running.client.get("/v1/reviews", params=params, headers=bearer(reviewer)).json()
            for item in page["items"]:
                reasons[item["review_reason"]] += 1
                running.client.post(
                    f"/v1/reviews/{item['id']}", json={"label": truth[item["id"]]}, headers=bearer(reviewer)
                )
            cursor = page["next_cursor"]
            if not cursor:
                break
    reviewed, _ = reviewed_images(connect(database_url), ImageStore(work / "images"))
    started = time.perf_counter()
    result = retrain(Registry(registry_dir), "model", reviewed, work=work / "runs", report=lambda _: None)
    retrain_seconds = time.perf_counter() - started
    summary = {
        "data": str(args.data),
        "v1_training_images": args.train_per_class * 2,
        "traffic": len(traffic),
        "failed_requests": failed,
        "reviews": dict(reasons),
        "reviews_total": sum(reasons.values()),
        "evaluation_images": len(result.plan.evaluation) if result.plan else None,
        "audit_items_in_evaluation": result.plan.counts["audit_eval"] if result.plan else None,
        "v1_accuracy": (result.metrics.get("baseline") or {}).get("accuracy"),
        "v2_accuracy": (result.metrics.get("candidate") or {}).get("accuracy"),
        "v1_macro_f1": (result.metrics.get("baseline") or {}).get("macro_f1"),
        "v2_macro_f1": (result.metrics.get("candidate") or {}).get("macro_f1"),
        "outcome": result.outcome,
        "failed_checks": result.failed_checks,
        "v1_training_seconds": round(v1_seconds, 1),
        "retrain_seconds": round(retrain_seconds, 1),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
