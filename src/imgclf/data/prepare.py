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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.duplicates import find_duplicates
from imgclf.data.inspection import ImageInfo, inspect_images
from imgclf.data.merge import merge_sources
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
    split_source: str = "dataset"  # "dataset" (folders/manifest), "seeded", or "dataset; N unsplit ..."
    fingerprint: str = ""
    sources: list[str] = field(default_factory=list)
    merged: dict[str, int] = field(default_factory=dict)  # replaced / relabelled by later sources
    excluded: int = 0  # files left out by request (--exclude)
    held_out_test: int = 0  # rows of the test split, never trained or validated on
    duplicates: dict[str, int] = field(default_factory=dict)  # see duplicate_counts
    image_stats: dict[str, float] = field(default_factory=dict)  # see image_statistics (training split)

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
            "sources": self.sources,
            "merged": self.merged,
            "excluded": self.excluded,
            "held_out_test": self.held_out_test,
            "duplicates": self.duplicates,
            "image_stats": self.image_stats,
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


def prepare_training_data(
    datasets: Dataset | Sequence[Dataset],
    val_fraction: float,
    seed: int,
    exclude: Collection[Path] = (),
) -> PreparedData:
    """Inspect, merge, filter and split ``datasets`` for training; raise DatasetError if unusable.

    Several datasets are merged, later ones overriding earlier ones (``imgclf.data.merge``); files
    in ``exclude`` (absolute paths, e.g. from ``excluded_files``) are left out and counted. Rows
    without a split in a dataset that has train and val splits are split by the seeded split, never
    dropped; ``test`` rows are held out and counted.
    """
    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if not datasets:
        raise DatasetError("no dataset given")
    excluded = {Path(p).resolve() for p in exclude}
    sources, skipped, left_out = [], [], 0
    for dataset in datasets:
        kept = [s for s in dataset.samples if s.path not in excluded]
        left_out += len(dataset.samples) - len(kept)
        samples, infos, unusable = usable_samples(Dataset(dataset.root, dataset.kind, kept))
        sources.append((samples, infos))
        skipped += unusable
    merged = merge_sources(sources)
    samples, infos = merged.samples, merged.infos
    classes = sorted({s.label for s in samples})
    where = ", ".join(str(d.root) for d in datasets)
    if len(classes) < 2:
        raise DatasetError(f"{where} has only one class ({classes[0]}); a classifier needs at least two")
    per_class = Counter(s.label for s in samples)
    too_small = sorted(name for name, n in per_class.items() if n < 2)
    if too_small:
        raise DatasetError(
            f"class(es) with fewer than 2 usable images: {', '.join(too_small)} "
            "(need at least one for training and one for validation)"
        )

    held_out = sum(1 for s in samples if s.split == "test")
    has_train = any(s.split == "train" for s in samples)
    has_val = any(s.split == "val" for s in samples)
    pool = [(s, i) for s, i in zip(samples, infos, strict=True) if s.split != "test"]
    if has_train and has_val:
        samples, infos, assigned = _split_the_unsplit(pool, val_fraction, seed)
        split_source = f"dataset; {assigned} unsplit file(s) given a seeded split" if assigned else "dataset"
    else:
        # No usable validation split: make a seeded one from the training files.
        pool = [(s, i) for s, i in pool if s.split in (None, "train")]
        infos = [i for _, i in pool]
        samples = assign_splits([s for s, _ in pool], infos, val_fraction, 0.0, seed)
        split_source = "seeded"

    train_classes = {s.label for s in samples if s.split == "train"}
    unseen = sorted({s.label for s in samples if s.split == "val"} - train_classes)
    if unseen:
        raise DatasetError(f"class(es) in the validation split but not in train: {', '.join(unseen)}")
    infos_by_path = {info.path: info for info in infos}
    return PreparedData(
        classes=sorted(train_classes),
        samples=samples,
        skipped=dict(Counter(item["problem"] for item in skipped)),
        skipped_files=skipped,
        split_source=split_source,
        fingerprint=data_fingerprint(samples, infos_by_path),
        sources=[str(d.root) for d in datasets],
        merged={"replaced": merged.replaced, "relabelled": merged.relabelled},
        excluded=left_out,
        held_out_test=held_out,
        duplicates=duplicate_counts(samples, infos),
        image_stats=image_statistics([i for s, i in zip(samples, infos, strict=True) if s.split == "train"]),
    )


def _split_the_unsplit(
    pool: list[tuple[Sample, ImageInfo]], val_fraction: float, seed: int
) -> tuple[list[Sample], list[ImageInfo], int]:
    """Give files without a split one: a copy's split when a copy of it has one, else the seeded split."""
    samples, infos = [s for s, _ in pool], [i for _, i in pool]
    unsplit = [index for index, s in enumerate(samples) if s.split is None]
    if not unsplit:
        return samples, infos, 0
    for cluster in find_duplicates(infos).clusters():
        splits = Counter(samples[i].split for i in cluster if samples[i].split is not None)
        if splits:
            split = splits.most_common(1)[0][0]
            for i in cluster:
                if samples[i].split is None:
                    samples[i] = replace(samples[i], split=split)
    still = [index for index in unsplit if samples[index].split is None]
    if still:
        assigned = assign_splits([samples[i] for i in still], [infos[i] for i in still], val_fraction, 0.0, seed)
        for index, sample in zip(still, assigned, strict=True):
            samples[index] = sample
    return samples, infos, len(unsplit)


def image_statistics(infos: Sequence[ImageInfo]) -> dict[str, float]:
    """Median sizes and the grayscale share of ``infos`` (what the data-aware training defaults read)."""
    if not infos:
        return {}
    widths = np.array([i.width or 0 for i in infos], dtype=np.float64)
    heights = np.array([i.height or 0 for i in infos], dtype=np.float64)
    return {
        "images": len(infos),
        "median_width": float(np.median(widths)),
        "median_height": float(np.median(heights)),
        "median_long_side": float(np.median(np.maximum(widths, heights))),
        "median_short_side": float(np.median(np.minimum(widths, heights))),
        "grayscale_share": float(np.mean([i.grayscale for i in infos])),
    }


def duplicate_counts(samples: list[Sample], infos: list[ImageInfo]) -> dict[str, int]:
    """Groups of copies (exact or near) the training data holds, and how many span train and val (leaked)."""
    groups = [c for c in find_duplicates(infos).clusters() if len(c) > 1]
    leaked = sum(1 for c in groups if len({samples[i].split for i in c}) > 1)
    return {"groups": len(groups), "files": sum(len(c) for c in groups), "leaked_groups": leaked}
