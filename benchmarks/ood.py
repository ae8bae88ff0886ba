"""Out-of-distribution scores: flagged rates and ROC-AUC, in-distribution photos vs other datasets.

1. DATA's validation split is split per class (seeded) into a reference half and a held-back half.
   A run is trained on DATA's train split with the reference half as its validation split (or
   ``--run``: a run whose validation split is not the reference: it is then exported with the
   reference half as ``reference_data``), and exported: its reference profile, and so the
   out-of-distribution calibration, is measured on the reference half only.
2. Pools, classified by the export's ``serving_features`` signature: the held-back half (in
   distribution, never seen by training or calibration), OTHER (another dataset: cats and dogs sent
   to the flowers model), uniform noise images, and the held-back photos darkened / blurred /
   rotated / JPEG-degraded (covariate shift of the same classes: not out of distribution by
   intent, reported to show how the score treats them).
3. For each pool: the share flagged by the export's stored scorer (``ood_score`` > 1, the gateway's
   default), the share that needs review by confidence/margin alone and with the flag, and the
   ROC-AUC of ``ood_score`` held-back vs pool. The same AUCs for variants (cosine / Euclidean, k;
   the full pooled embedding, and wider projections of it, instead of the export's 32-d
   ``embedding_projection``) and for the classifier's own confidence (1 − max score) as the baseline.

    .venv/bin/python benchmarks/ood.py --work /tmp/ood-flowers
        [--data ../shared/data/flowers --other ../shared/data/cats_dogs/validation]
        [--run RUN_DIR] [--epochs 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.drift import split_reference  # noqa: E402
from imgclf.contract import (  # noqa: E402
    FEATURES_SIGNATURE,
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_SCORES,
)
from imgclf.data.sources import load_dataset  # noqa: E402
from imgclf.export.inference import ExportedModel  # noqa: E402
from imgclf.export.savedmodel import projection_matrix  # noqa: E402
from imgclf.monitoring.ood import OutOfDistribution  # noqa: E402
from imgclf.monitoring.profile import ReferenceProfile  # noqa: E402
from imgclf.monitoring.simulation import SHIFTS, apply_shift  # noqa: E402
from imgclf.monitoring.window import compact_embedding  # noqa: E402

WEIGHTS = REPO.parent / "shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5"
CONFIDENCE, MARGIN = 0.7, 0.2  # the gateway's default review policy


def write_manifest(rows: list[tuple[Path, str, str]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows([str(p.resolve()), label, split] for p, label, split in rows)
    return path


def noise_images(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(160, 480, 2))
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def observe(model: ExportedModel, images: list[bytes], batch: int = 64) -> dict[str, np.ndarray]:
    """Scores, the export's decision, the projection as the gateway stores it, the full embedding."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("scores", "class_ids", "projection", "embedding")}
    for start in range(0, len(images), batch):
        out = model.predict_bytes(images[start : start + batch], signature=FEATURES_SIGNATURE)
        parts["scores"].append(out[OUTPUT_SCORES])
        parts["class_ids"].append(out[OUTPUT_CLASS_IDS])
        parts["projection"].append(np.array([compact_embedding(r) for r in out[OUTPUT_EMBEDDING_PROJECTION]]))
        parts["embedding"].append(out[OUTPUT_EMBEDDING])
    return {k: np.concatenate(v).astype(np.float64) for k, v in parts.items()}


def review_by_confidence(pool: dict[str, np.ndarray]) -> np.ndarray:
    scores = pool["scores"]
    if scores.shape[1] == 1:  # a sigmoid head: the export's scores are [p] per image
        scores = np.concatenate([1 - scores, scores], axis=1)
    top = np.sort(scores, axis=1)[:, ::-1]
    confidence = scores[np.arange(len(scores)), pool["class_ids"].astype(int)]
    return (confidence < CONFIDENCE) | (top[:, 0] - top[:, 1] < MARGIN)


def auc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def train_run(args: argparse.Namespace, reference: list[tuple[Path, str]], work: Path) -> Path:
    import imgclf

    train = [(s.path, s.label, "train") for s in load_dataset(args.data).subset("train").samples]
    manifest = write_manifest(train + [(p, label, "val") for p, label in reference], work / "train.csv")
    started = time.perf_counter()
    run = imgclf.train(
        manifest, out=work / "run", model="mobilenet_v2", alpha=0.35, weights=str(args.weights),
        epochs=args.epochs, fine_tune_epochs=0, seed=args.seed, report=None,
    )  # fmt: skip
    print(f"trained {len(train)} images, {args.epochs} epoch(s): {time.perf_counter() - started:.0f} s")
    return run.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a new or reused folder for the run, export and figures")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/flowers"))
    parser.add_argument("--other", default=str(REPO.parent / "shared/data/cats_dogs/validation"))
    parser.add_argument("--other-images", type=int, default=500)
    parser.add_argument("--noise-images", type=int, default=100)
    parser.add_argument("--run", help="a trained run to export instead of training one")
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200, help="random reference halves for the flagged rate")
    parser.add_argument("--json", help="write all figures here")
    args = parser.parse_args()

    import imgclf

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference, held_back = split_reference(args.data, args.seed)
    if args.run:
        run, reference_data = Path(args.run), str(write_manifest(
            [(p, label, "val") for p, label in reference], work / "reference.csv"))  # fmt: skip
    else:
        run = work / "run" if (work / "run" / "weights" / "best.keras").exists() else train_run(args, reference, work)
        reference_data = None
    registry = work / f"registry-{int(time.time())}"
    started = time.perf_counter()
    version_dir = imgclf.export(run, registry=registry, name="bench", reference_data=reference_data)
    print(f"export (reference profile of {len(reference)} images): {time.perf_counter() - started:.1f} s")
    profile = ReferenceProfile.load(version_dir)
    stored = profile.ood
    assert stored is not None, "the export's reference profile has no out-of-distribution calibration"
    model = ExportedModel.load(version_dir)

    originals = [p.read_bytes() for p, _ in held_back]
    other = sorted(s.path for s in load_dataset(args.other).samples)
    other = [other[i] for i in np.random.default_rng(args.seed + 1).permutation(len(other))[: args.other_images]]
    started = time.perf_counter()
    pools = {
        "reference": observe(model, [p.read_bytes() for p, _ in reference]),
        "held_back": observe(model, originals),
        "other_dataset": observe(model, [p.read_bytes() for p in other]),
        "noise": observe(model, noise_images(args.noise_images, args.seed + 2)),
    }
    for shift in SHIFTS:
        pools[f"held_back_{shift}"] = observe(model, [apply_shift(data, shift) for data in originals])
    print(f"observed {sum(len(p['scores']) for p in pools.values())} images: {time.perf_counter() - started:.0f} s")
    in_accuracy = float(np.mean(pools["held_back"]["class_ids"] == _labels(held_back, model.labels)))

    # name → (scorer, what it scores in a pool): the export's projection, or the full pooled embedding,
    # or wider projections of it (the same Gaussian construction and seed as the export's 32 columns).
    Source = Callable[[dict[str, np.ndarray]], np.ndarray]
    projection: Source = lambda pool: pool["projection"]  # noqa: E731
    full: Source = lambda pool: pool["embedding"]  # noqa: E731
    variants: dict[str, tuple[OutOfDistribution, Source]] = {"stored": (stored, projection)}
    for metric in ("cosine", "euclidean"):
        for k in (1, 5, 10, 20):
            scorer = OutOfDistribution.calibrate(profile.window.embeddings, k, metric)
            variants[f"projection 32 {metric} k={k}"] = (scorer, projection)
    width = pools["reference"]["embedding"].shape[1]
    for dim in (64, 128, 256):
        matrix = projection_matrix(width, dim).astype(np.float64)
        wider: Source = lambda pool, m=matrix: pool["embedding"] @ m  # noqa: E731
        for metric in ("cosine", "euclidean"):
            variants[f"projection {dim} {metric} k=5"] = (
                OutOfDistribution.calibrate(wider(pools["reference"]), 5, metric),
                wider,
            )
    for metric in ("cosine", "euclidean"):
        variants[f"full {width} {metric} k=5"] = (OutOfDistribution.calibrate(full(pools["reference"]), 5, metric),
                                                  full)  # fmt: skip

    def scores(name: str, pool: dict[str, np.ndarray]) -> np.ndarray:
        scorer, source = variants[name]
        return scorer.scores(source(pool))

    results: dict = {
        "data": args.data, "other": args.other, "reference_images": profile.window.size,
        "held_back_images": len(originals), "held_back_accuracy": round(in_accuracy, 4),
        "stored_calibration": stored.to_dict(), "pools": {}, "auc": {},
    }  # fmt: skip
    inside = scores("stored", pools["held_back"])
    print(f"\nstored scorer: {stored.to_dict()}; held-back accuracy {in_accuracy:.3f}")
    print(f"{'pool':<24}{'images':>7}{'flagged':>9}{'review (conf.)':>16}{'review (+ood)':>15}{'AUC ood':>9}"
          f"{'AUC conf.':>10}")  # fmt: skip
    baseline_inside = 1 - pools["held_back"]["scores"].max(1)
    for name, pool in pools.items():
        score = scores("stored", pool)
        flagged = score > 1
        review = review_by_confidence(pool)
        figures = {
            "images": len(score),
            "flagged": round(float(flagged.mean()), 4),
            "review_confidence_only": round(float(review.mean()), 4),
            "review_with_ood": round(float((review | flagged).mean()), 4),
            "ood_score_median": round(float(np.median(score)), 3),
        }
        if name not in ("held_back", "reference"):
            figures["auc_ood"] = round(auc(inside, score), 4)
            figures["auc_confidence"] = round(auc(baseline_inside, 1 - pool["scores"].max(1)), 4)
        results["pools"][name] = figures
        print(f"{name:<24}{figures['images']:>7}{figures['flagged']:>9.1%}{figures['review_confidence_only']:>16.1%}"
              f"{figures['review_with_ood']:>15.1%}{figures.get('auc_ood', float('nan')):>9.3f}"
              f"{figures.get('auc_confidence', float('nan')):>10.3f}")  # fmt: skip

    print(f"\n{'variant':<30}{'held-back flagged':>18}" + "".join(f"{n:>16}" for n in ("AUC other", "AUC noise")))
    for name in variants:
        inside_v = scores(name, pools["held_back"])
        row = {
            "held_back_flagged": round(float((inside_v > 1).mean()), 4),
            "auc_other": round(auc(inside_v, scores(name, pools["other_dataset"])), 4),
            "auc_noise": round(auc(inside_v, scores(name, pools["noise"])), 4),
        }
        results["auc"][name] = row
        print(f"{name:<30}{row['held_back_flagged']:>18.1%}{row['auc_other']:>16.4f}{row['auc_noise']:>16.4f}")

    # The flagged rate over calibration draws: the embeddings do not depend on which half is the reference
    # (frozen backbone), so random halves of all validation images stand in for re-exported references.
    both = np.concatenate([pools["reference"]["projection"], pools["held_back"]["projection"]])
    rng, rates = np.random.default_rng(args.seed + 3), []
    for _ in range(args.resamples):
        order = rng.permutation(len(both))
        scorer = OutOfDistribution.calibrate(both[order[: len(both) // 2]])
        rates.append(float((scorer.scores(both[order[len(both) // 2 :]]) > 1).mean()))
    low, high = np.percentile(rates, [5, 95])
    results["resampled_held_back_flagged"] = {
        "draws": args.resamples, "mean": round(float(np.mean(rates)), 4), "p5": round(low, 4), "p95": round(high, 4),
    }  # fmt: skip
    print(f"\nheld-back flagged over {args.resamples} random reference halves: mean {np.mean(rates):.1%}, "
          f"5-95 % range {low:.1%}-{high:.1%}")  # fmt: skip

    started = time.perf_counter()
    for _ in range(20):
        OutOfDistribution.calibrate(profile.window.embeddings)
    calibrate_ms = (time.perf_counter() - started) / 20 * 1000
    batch = pools["held_back"]["projection"][:8]
    started = time.perf_counter()
    for _ in range(1000):
        stored.scores(batch)
    score_ms = time.perf_counter() - started  # 1000 calls: seconds → ms per call
    results["timing_ms"] = {"calibrate": round(calibrate_ms, 2), "score_batch_of_8": round(score_ms, 3)}
    print(f"\ncalibration on {profile.window.size} reference embeddings: {calibrate_ms:.1f} ms; "
          f"scoring a batch of 8: {score_ms:.3f} ms")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _labels(rows: list[tuple[Path, str]], classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[label] for _, label in rows])


if __name__ == "__main__":
    main()
