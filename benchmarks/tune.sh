#!/usr/bin/env bash
# Time-boxed recipe search, then the final model's evaluation.
#   benchmarks/tune.sh flowers 30m     # dataset under ../shared/data, budget
set -euo pipefail
dataset=${1:-flowers}
budget=${2:-30m}
shared=${SHARED:-../shared}
out=${OUT:-runs/tune_${dataset}}
rm -rf "$out"
start=$(date +%s)
.venv/bin/imgclf tune "$shared/data/$dataset" --out "$out" --budget "$budget" --model mobilenet_v2 --alpha 0.35 \
  --weights "$shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5" "${@:3}"
echo "tune wall time (search + final model): $(( $(date +%s) - start )) s"
.venv/bin/imgclf evaluate "$out/final"
cat "$out/leaderboard.csv"
