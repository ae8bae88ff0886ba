#!/usr/bin/env bash
# Train and evaluate on a real dataset with several seeds; prints each seed's wall time and
# validation metrics, the linear-probe baseline beside it, then mean and spread over the seeds.
# ECE is the run's (calibrated: temperature fitted on the validation split); "ECE T=1" is without the
# temperature and "ECE xfit" fits it on one half of the split and measures on the other (no reuse).
#   benchmarks/train_accuracy.sh cats_dogs mobilenet_v2   # or: flowers mobilenet_v2 | cats_dogs small_cnn
#   SEEDS="42" benchmarks/train_accuracy.sh flowers mobilenet_v2 --image-size 288   # extra options go to train
# With no extra options `imgclf train` picks the recipe from the data (image size, epochs, class
# weights, augmentation): the headline figures are for that default.
set -euo pipefail
dataset=${1:-cats_dogs}
model=${2:-mobilenet_v2}
shared=${SHARED:-../shared}
seeds=${SEEDS:-42 1 2}
prefix=${OUT:-runs/bench_${dataset}_${model}}
if [ "$model" = small_cnn ]; then
  options=(--model small_cnn --image-size 128 --epochs ${EPOCHS:-20} --patience 5)
else
  options=(--model "$model" --alpha 0.35 --weights "$shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5")
fi
summary=$(mktemp)
for seed in $seeds; do
  out="${prefix}_seed${seed}"
  rm -rf "$out"
  start=$(date +%s)
  .venv/bin/imgclf train "$shared/data/$dataset" --out "$out" --seed "$seed" "${options[@]}" "${@:3}"
  seconds=$(( $(date +%s) - start ))
  echo "training wall time (seed $seed): $seconds s"
  .venv/bin/imgclf evaluate "$out"
  echo "$seed $seconds $out" >> "$summary"
done
.venv/bin/python - "$summary" <<'EOF'
import json, statistics, sys
from pathlib import Path

import numpy as np
import pandas as pd

from imgclf.evaluation.metrics import expected_calibration_error
from imgclf.modeling.calibration import fit_temperature, logits_of


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def calibration_check(out):
    """ECE without the run's temperature, and cross-fitted (T fitted on one half, ECE on the other)."""
    calibration = Path(out) / "eval" / "calibration.json"
    if not calibration.is_file():
        return None, None
    frame = pd.read_csv(Path(out) / "eval" / "predictions.csv")
    columns = [c for c in frame.columns if c.startswith("score_")]
    classes = [c[len("score_"):] for c in columns]
    labels = frame["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    raw = logits_of(frame[columns].to_numpy()) * json.loads(calibration.read_text())["temperature"]
    uncalibrated = expected_calibration_error(labels, softmax(raw))
    order = np.random.default_rng(0).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    scores = np.zeros_like(raw)
    for fit_on, measure_on in (halves, halves[::-1]):
        scores[measure_on] = softmax(raw[measure_on] / fit_temperature(raw[fit_on], labels[fit_on]))
    return uncalibrated, expected_calibration_error(labels, scores)


rows = []
for line in Path(sys.argv[1]).read_text().split("\n"):
    if not line.strip():
        continue
    seed, seconds, out = line.split()
    metrics = json.loads((Path(out) / "eval" / "metrics.json").read_text())
    config = json.loads((Path(out) / "config.json").read_text())
    baseline_path = Path(out) / "eval" / "baseline.json"
    probe = json.loads(baseline_path.read_text())["linear_probe"]["accuracy"] if baseline_path.is_file() else None
    uncalibrated, cross_fitted = calibration_check(out)
    rows.append((seed, metrics["accuracy"], metrics["expected_calibration_error"], probe, int(seconds), config,
                 uncalibrated, cross_fitted))  # fmt: skip
print(f"{'seed':>5} {'accuracy':>9} {'ECE':>7} {'ECE T=1':>8} {'ECE xfit':>8} {'probe':>7} {'seconds':>8}  recipe")
show = lambda value: "-" if value is None else f"{value:.4f}"  # noqa: E731
for seed, accuracy, ece, probe, seconds, config, uncalibrated, cross_fitted in rows:
    recipe = f"{config['image_size']} px, {config['epochs']}+{config['fine_tune_epochs']} epochs"
    print(f"{seed:>5} {accuracy:>9.4f} {ece:>7.4f} {show(uncalibrated):>8} {show(cross_fitted):>8} {show(probe):>7} "
          f"{seconds:>8}  {recipe}")  # fmt: skip
for name, index in (("accuracy", 1), ("ECE", 2), ("ECE cross-fitted", 7)):
    values = [row[index] for row in rows if row[index] is not None]
    if not values:
        continue
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{name}: mean {statistics.mean(values):.4f}, sd {spread:.4f}, range {min(values):.4f}-{max(values):.4f}")
EOF
rm -f "$summary"
