"""Deterministic, stratified train/val/test splits that never separate duplicates.

Files are first merged into clusters of exact and near duplicates; whole clusters are assigned
to splits, class by class, in a seeded random order, until each split holds its fraction of
that class. The same files, fractions and seed always give the same split, whatever order the
files were listed in.

Example:

>>> samples = assign_splits(dataset.samples, infos, val_fraction=0.2, seed=42)
>>> Counter(s.split for s in samples)
Counter({'train': 1600, 'val': 400})
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from imgclf.data.duplicates import Duplicates, find_duplicates
from imgclf.data.inspection import ImageInfo
from imgclf.data.sources import Sample
from imgclf.errors import DatasetError


def assign_splits(
    samples: list[Sample],
    infos: list[ImageInfo],
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 42,
    duplicates: Duplicates | None = None,
) -> list[Sample]:
    """Return ``samples`` (same order) with ``split`` set to train, val or test."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"split fractions must be in [0, 1) and leave room for training (val={val_fraction}, test={test_fraction})"
        )
    duplicates = duplicates if duplicates is not None else find_duplicates(infos)
    clusters_by_label: dict[str, list[list[int]]] = defaultdict(list)
    for cluster in duplicates.clusters():
        # A cluster with conflicting labels goes where its most common label goes.
        label = Counter(samples[i].label for i in cluster).most_common(1)[0][0]
        clusters_by_label[label].append(sorted(cluster, key=lambda i: str(samples[i].path)))

    split_of: dict[int, str] = {}
    rng = np.random.default_rng(seed)
    for label in sorted(clusters_by_label):
        clusters = sorted(clusters_by_label[label], key=lambda c: str(samples[c[0]].path))
        order = rng.permutation(len(clusters))
        total = sum(len(c) for c in clusters)
        targets = {"test": round(total * test_fraction), "val": round(total * val_fraction)}
        filled = {"test": 0, "val": 0}
        for position in order:
            cluster = clusters[position]
            target = next((name for name in ("test", "val") if filled[name] < targets[name]), "train")
            # Never empty the training split of a class.
            train_left = total - filled["test"] - filled["val"]
            if target != "train" and train_left - len(cluster) < 1:
                target = "train"
            if target != "train":
                filled[target] += len(cluster)
            for index in cluster:
                split_of[index] = target
    return [replace(sample, split=split_of[i]) for i, sample in enumerate(samples)]


def split_summary(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Images per split and class."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        table[sample.split or "all"][sample.label] += 1
    return {split: dict(sorted(c.items())) for split, c in sorted(table.items())}
