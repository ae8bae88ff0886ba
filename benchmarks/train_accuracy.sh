#!/usr/bin/env bash
# Train and evaluate on a real dataset with several seeds; prints each seed's wall time and
# validation metrics, the linear-probe baseline beside it, then mean and spread over the seeds.
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

rows = []
for line in Path(sys.argv[1]).read_text().split("\n"):
    if not line.strip():
        continue
    seed, seconds, out = line.split()
    metrics = json.loads((Path(out) / "eval" / "metrics.json").read_text())
    config = json.loads((Path(out) / "config.json").read_text())
    baseline_path = Path(out) / "eval" / "baseline.json"
    probe = json.loads(baseline_path.read_text())["linear_probe"]["accuracy"] if baseline_path.is_file() else None
    rows.append((seed, metrics["accuracy"], metrics["expected_calibration_error"], probe, int(seconds), config))
print(f"{'seed':>5} {'accuracy':>9} {'ECE':>7} {'probe':>7} {'seconds':>8}  recipe")
for seed, accuracy, ece, probe, seconds, config in rows:
    recipe = f"{config['image_size']} px, {config['epochs']}+{config['fine_tune_epochs']} epochs"
    shown = "-" if probe is None else f"{probe:.4f}"
    print(f"{seed:>5} {accuracy:>9.4f} {ece:>7.4f} {shown:>7} {seconds:>8}  {recipe}")
for name, index in (("accuracy", 1), ("ECE", 2)):
    values = [row[index] for row in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{name}: mean {statistics.mean(values):.4f}, sd {spread:.4f}, range {min(values):.4f}-{max(values):.4f}")
EOF
rm -f "$summary"
