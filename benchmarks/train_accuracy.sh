#!/usr/bin/env bash
# Train and evaluate on a real dataset; prints wall time and validation metrics.
#   benchmarks/train_accuracy.sh cats_dogs mobilenet_v2   # or: flowers mobilenet_v2 | cats_dogs small_cnn
#   benchmarks/train_accuracy.sh flowers mobilenet_v2 --image-size 288   # extra options go to train
set -euo pipefail
dataset=${1:-cats_dogs}
model=${2:-mobilenet_v2}
shared=${SHARED:-../shared}
out=${OUT:-runs/bench_${dataset}_${model}}
rm -rf "$out"
if [ "$model" = small_cnn ]; then
  options=(--model small_cnn --image-size 128 --epochs ${EPOCHS:-20} --patience 5)
else
  options=(--model "$model" --alpha 0.35 --weights "$shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5"
           --epochs 6 --fine-tune-epochs 4)
fi
start=$(date +%s)
.venv/bin/imgclf train "$shared/data/$dataset" --out "$out" "${options[@]}" "${@:3}"
echo "training wall time: $(( $(date +%s) - start )) s"
.venv/bin/imgclf evaluate "$out"
