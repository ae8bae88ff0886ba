"""Turn a dataset on disk into the labelled file lists one training run uses.

Every file is inspected first: files that are not images, do not decode or are truncated are
skipped and counted (never fatal). A dataset with train/val folders (or a manifest with a split
column) keeps its split; one without gets a seeded, stratified validation split that keeps
duplicates together. The result names every file and its split, so a run can record exactly
what it was trained and validated on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.data.inspection import ImageInfo, inspect_images
from imgclf.data.sources import Dataset, Sample
from imgclf.data.splits import assign_splits
from imgclf.errors import DatasetError


@dataclass
class PreparedData:
    """Usable, split, labelled files for one run."""

    classes: list[str]
    samples: list[Sample]  # every usable file, split set to train or val (or test)
    skipped: dict[str, int] = field(default_factory=dict)  # problem -> count
    skipped_files: list[dict[str, Any]] = field(default_factory=list)
    split_source: str = "dataset"  # "dataset" (folders/manifest) or "seeded"
    fingerprint: str = ""

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def class_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    def summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for sample in self.samples:
            per_class = counts.setdefault(sample.split or "all", {})
            per_class[sample.label] = per_class.get(sample.label, 0) + 1
        return {
            "classes": self.classes,
            "counts": counts,
            "split_source": self.split_source,
            "skipped": self.skipped,
            "skipped_files": self.skipped_files,
            "fingerprint": self.fingerprint,
        }


def data_fingerprint(samples: list[Sample], infos_by_path: dict[Path, ImageInfo]) -> str:
    """sha256 over (content hash, label, split) of every file, independent of paths and order."""
    lines = sorted(f"{infos_by_path[s.path].sha256},{s.label},{s.split or ''}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def usable_samples(dataset: Dataset) -> tuple[list[Sample], list[ImageInfo], list[dict[str, Any]]]:
    """Inspect every file; return the usable samples, their infos, and the skipped files."""
    infos = inspect_images([s.path for s in dataset.samples])
    kept, kept_infos, skipped = [], [], []
    for sample, info in zip(dataset.samples, infos, strict=True):
        if info.usable:
            kept.append(sample)
            kept_infos.append(info)
        else:
            skipped.append({"path": str(sample.path), "problem": info.status, "detail": info.error})
    if not kept:
        raise DatasetError(f"no usable images in {dataset.root} ({len(skipped)} file(s) skipped)")
    return kept, kept_infos, skipped


def prepare_training_data(dataset: Dataset, val_fraction: float, seed: int) -> PreparedData:
    """Inspect, filter and split ``dataset`` for training; raise DatasetError if unusable."""
    samples, infos, skipped = usable_samples(dataset)
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DatasetError(f"{dataset.root} has only one class ({classes[0]}); a classifier needs at least two")
    per_class = Counter(s.label for s in samples)
    too_small = sorted(name for name, n in per_class.items() if n < 2)
    if too_small:
        raise DatasetError(
            f"class(es) with fewer than 2 usable images: {', '.join(too_small)} "
            "(need at least one for training and one for validation)"
        )

    split_source = "dataset"
    has_train = any(s.split == "train" for s in samples)
    has_val = any(s.split == "val" for s in samples)
    if has_train and has_val:
        samples = [s for s in samples if s.split in ("train", "val")]
    else:
        # No usable validation split: make a seeded one from the training files.
        pool = [(s, i) for s, i in zip(samples, infos, strict=True) if s.split in (None, "train")]
        samples = assign_splits([s for s, _ in pool], [i for _, i in pool], val_fraction, 0.0, seed)
        infos = [i for _, i in pool]
        split_source = "seeded"

    train_classes = {s.label for s in samples if s.split == "train"}
    unseen = sorted({s.label for s in samples if s.split == "val"} - train_classes)
    if unseen:
        raise DatasetError(f"class(es) in the validation split but not in train: {', '.join(unseen)}")
    classes = sorted(train_classes)
    infos_by_path = {info.path: info for info in infos}
    skipped_counts = dict(Counter(item["problem"] for item in skipped))
    return PreparedData(
        classes=classes,
        samples=samples,
        skipped=skipped_counts,
        skipped_files=skipped,
        split_source=split_source,
        fingerprint=data_fingerprint(samples, infos_by_path),
    )
