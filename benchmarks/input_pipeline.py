"""Images per second: imgclf's tf.data training pipeline vs ImageDataGenerator.flow_from_dataframe.

Same files, same image size, same batch size, with and without augmentation, measured one after
the other in one process. For imgclf the first epoch (read + decode + resize + cache) and a
later epoch (from the in-memory cache) are timed separately; ImageDataGenerator decodes every
epoch, so one epoch is representative.

    .venv/bin/python benchmarks/input_pipeline.py ../shared/data/cats_dogs/train --size 224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from imgclf.config import AugmentationConfig  # noqa: E402
from imgclf.data.augmentation import build_augmenter
from imgclf.data.pipeline import make_dataset  # noqa: E402
from imgclf.data.sources import load_dataset  # noqa: E402
from imgclf.preprocessing import PreprocessingSpec  # noqa: E402


def images_per_second(batches, count: int) -> float:
    start = time.perf_counter()
    seen = 0
    for x, _ in batches:
        seen += int(x.shape[0])
        if seen >= count:
            break
    return seen / (time.perf_counter() - start)


def imgclf_rates(paths, labels, size, batch, augment) -> dict[str, float]:
    spec = PreprocessingSpec(image_size=size, normalization="symmetric")
    augmenter = build_augmenter(AugmentationConfig(), seed=0) if augment else None
    dataset = make_dataset(paths, labels, spec, batch, training=True, augmenter=augmenter, cache=True)
    first = images_per_second(dataset, len(paths))
    cached = images_per_second(dataset, len(paths))
    return {"first_epoch": first, "cached_epoch": cached}


def generator_rate(paths, labels, size, batch, augment) -> float:
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    options = (
        dict(horizontal_flip=True, rotation_range=18, zoom_range=0.1, width_shift_range=0.1, height_shift_range=0.1)
        if augment
        else {}
    )
    generator = ImageDataGenerator(rescale=1 / 127.5, **options)
    frame = pd.DataFrame({"filename": paths, "class": [str(label) for label in labels]})
    iterator = generator.flow_from_dataframe(
        frame, target_size=(size, size), batch_size=batch, class_mode="binary", shuffle=True, seed=0
    )
    start = time.perf_counter()
    seen = 0
    for _ in range(len(iterator)):
        x, _ = next(iterator)
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    classes = dataset.classes
    paths = [str(s.path) for s in dataset.samples]
    labels = np.array([classes.index(s.label) for s in dataset.samples], np.int32)
    results = {
        "files": len(paths),
        "size": args.size,
        "batch_size": args.batch_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}",
    }
    for augment in (False, True):
        key = "augmented" if augment else "plain"
        ours = imgclf_rates(paths, labels, args.size, args.batch_size, augment)
        theirs = generator_rate(paths, labels, args.size, args.batch_size, augment)
        results[key] = {
            "imgclf_first_epoch": round(ours["first_epoch"], 1),
            "imgclf_cached_epoch": round(ours["cached_epoch"], 1),
            "image_data_generator": round(theirs, 1),
            "ratio_first_epoch": round(ours["first_epoch"] / theirs, 2),
            "ratio_cached_epoch": round(ours["cached_epoch"] / theirs, 2),
        }
        print(key, json.dumps(results[key]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
