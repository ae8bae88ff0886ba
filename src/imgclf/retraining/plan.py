"""What one retraining run trains and evaluates on.

* **Evaluation set** (fixed, never trained on): the stable version's validation split, plus half of
  the audit-reviewed images, chosen by a hash of their content (the same images every time).
  Audit items are a random sample of all traffic, so accuracy on them is unbiased; uncertain
  items are not (they over-represent hard cases) and only ever go to training.
* **Training set**: the stable version's training files, plus every other reviewed image (a
  reviewed label replaces the original label of the same image, by content), with the stable
  version's validation split kept as the run's validation split (early stopping on the same
  images as before). Any training image that is a copy (exact or near) of an evaluation image is
  left out and counted: evaluation images never leak into training.

Example:
    >>> plan = build_plan(registry, "cats_dogs", reviewed, data=None)
    >>> plan.counts["audit_eval"], plan.counts["reviewed_train"]
    (40, 180)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imgclf.data.checks import check_dataset
from imgclf.data.duplicates import find_duplicates
from imgclf.data.inspection import inspect_images
from imgclf.data.prepare import prepare_training_data
from imgclf.data.sources import Dataset, Sample, load_dataset, write_manifest
from imgclf.errors import DatasetError, RegistryError
from imgclf.registry.store import Registry
from imgclf.retraining.reviewed import ReviewedImage
from imgclf.run_dir import RunDir


def audit_holdout(sha256: str) -> bool:
    """Whether an audit item is held out for evaluation: half of them, by content, the same every time."""
    return int(hashlib.sha256(("holdout:" + sha256).encode()).hexdigest()[:8], 16) % 2 == 0


@dataclass
class RetrainPlan:
    name: str
    parent_version: int
    parent_run: RunDir
    original: str  # where the original files came from
    classes: list[str]
    parent_classes: list[str]
    train: list[Sample]  # split train or val (the run's validation split: the parent's)
    evaluation: list[Sample]  # the fixed evaluation set (no split)
    counts: dict[str, int] = field(default_factory=dict)
    data_check: dict[str, int] = field(default_factory=dict)

    @property
    def new_classes(self) -> list[str]:
        return sorted(set(self.classes) - set(self.parent_classes))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The training and evaluation manifests (``train.csv``, ``evaluation.csv``) in ``folder``."""
        return (
            write_manifest(self.train, folder / "train.csv", absolute=True),
            write_manifest(self.evaluation, folder / "evaluation.csv", absolute=True),
        )

    def lines(self) -> list[str]:
        c = self.counts
        lines = [
            f"{self.name}: retraining from stable version {self.parent_version} (run {self.parent_run.path})",
            f"  original data: {self.original}: {c['original_train']} training, {c['original_val']} validation images",
            f"  reviews: {c['reviewed']} reviewed image(s): {c['reviewed_train']} to training "
            f"({c['relabelled']} relabel an original image), {c['audit_eval']} audit item(s) held out for evaluation",
            f"  training set: {c['train']} images ({c['val']} of them validation), classes {', '.join(self.classes)}",
            f"  evaluation set (fixed, never trained on): {len(self.evaluation)} images "
            f"({c['original_val']} original validation + {c['audit_eval']} audit)",
        ]
        if c["left_out_as_evaluation"]:
            lines.append(f"  {c['left_out_as_evaluation']} training image(s) left out: copies of evaluation images")
        if self.new_classes:
            lines.append(
                f"  new class(es): {', '.join(self.new_classes)}: the head grows (no warm start); the gate compares "
                "with stable on the classes stable knows"
            )
        problems = {k: v for k, v in self.data_check.items() if v and k not in ("files",)}
        lines.append(
            "  data check: " + (", ".join(f"{k} {v}" for k, v in problems.items()) if problems else "no problems")
        )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_version": self.parent_version,
            "original": self.original,
            "classes": self.classes,
            "new_classes": self.new_classes,
            "counts": self.counts,
            "data_check": self.data_check,
        }


def parent_run(registry: Registry, name: str, version: int) -> RunDir:
    """The training run a version was exported from (its model card records it)."""
    card = registry.card(name, version)
    run = RunDir(Path(card.get("run_dir") or ""))
    if not card.get("run_dir") or not run.config.is_file():
        raise RegistryError(
            f"{name} version {version} was exported from run {card.get('run_dir')!r}, which is no longer there: "
            "retraining starts from that run's configuration and data"
        )
    return run


def build_plan(
    registry: Registry, name: str, reviewed: list[ReviewedImage], data: str | Path | None = None
) -> RetrainPlan:
    """The training and evaluation sets for retraining ``name``'s stable version with ``reviewed``."""
    from imgclf.config import TrainConfig

    state = registry.state(name)
    if state.stable is None:
        raise RegistryError(f"{name} has no stable version to retrain")
    run = parent_run(registry, name, state.stable)
    config = TrainConfig.load(run.config)
    if data is not None:
        original = str(data)
        prepared = prepare_training_data([load_dataset(data)], config.val_fraction, config.seed)
        originals = prepared.samples
    elif run.manifest.is_file():
        original = f"the files stable was trained on ({run.manifest})"
        originals = load_dataset(run.manifest).samples
    else:
        raise DatasetError(f"{run.path} has no data manifest; pass --data")

    held_out = [r for r in reviewed if r.reason == "audit" and audit_holdout(r.sha256)]
    to_train = [r for r in reviewed if not (r.reason == "audit" and audit_holdout(r.sha256))]
    candidates = [s for s in originals if s.split in ("train", "val")]
    reviewed_samples = [Sample(r.path, r.label, "train") for r in to_train]
    eval_samples = [Sample(r.path, r.label, None) for r in held_out]
    everything = candidates + reviewed_samples + eval_samples
    infos = inspect_images([s.path for s in everything])
    digest = [info.sha256 for info in infos]

    # Reviewed labels win over original ones for the same image (by content), in both sets.
    review_label = {r.sha256: r.label for r in reviewed}
    relabelled = 0
    for index, sample in enumerate(everything):
        new = review_label.get(digest[index])
        if new is not None and new != sample.label:
            everything[index] = replace(sample, label=new)
            relabelled += index < len(candidates)
    n_orig, n_rev = len(candidates), len(reviewed_samples)
    original_val = [i for i in range(n_orig) if everything[i].split == "val"]
    evaluation_index = set(original_val) | set(range(n_orig + n_rev, len(everything)))

    # Training keeps one entry per image: an original entry replaced by a reviewed copy of it is dropped.
    reviewed_digests = {digest[i] for i in range(n_orig, n_orig + n_rev)}
    train_index = [i for i in range(n_orig) if everything[i].split == "train" and digest[i] not in reviewed_digests]
    train_index += list(range(n_orig, n_orig + n_rev))
    # Copies (exact or near) of evaluation images never train.
    leaked: set[int] = set()
    for cluster in find_duplicates(infos).clusters():
        if len(cluster) > 1 and evaluation_index.intersection(cluster):
            leaked.update(i for i in cluster if i in train_index)
    train_index = [i for i in train_index if i not in leaked]
    train_samples = [replace(everything[i], split="train") for i in train_index]
    val_samples = [replace(everything[i], split="val") for i in original_val]
    evaluation = [replace(everything[i], split=None) for i in sorted(evaluation_index)]
    overlap = {digest[i] for i in train_index} & {digest[i] for i in evaluation_index}
    if overlap:  # cannot happen after the filtering above; a guard, not a path
        raise DatasetError(f"{len(overlap)} evaluation image(s) would leak into training; refusing to retrain")

    training = train_samples + val_samples
    classes = sorted({s.label for s in train_samples})
    training_infos = [infos[i] for i in train_index] + [infos[i] for i in original_val]
    report = check_dataset(Dataset(run.path, "csv", training), infos=training_infos)
    counts = Counter(s.split for s in training)
    return RetrainPlan(
        name=name,
        parent_version=state.stable,
        parent_run=run,
        original=original,
        classes=classes,
        parent_classes=run.read_labels(),
        train=training,
        evaluation=evaluation,
        counts={
            "original_train": sum(1 for s in candidates if s.split == "train"),
            "original_val": len(original_val),
            "reviewed": len(reviewed),
            "reviewed_train": n_rev,
            "audit_eval": len(held_out),
            "relabelled": relabelled,
            "left_out_as_evaluation": len(leaked),
            "train": len(training),
            "val": counts.get("val", 0),
        },
        data_check=report.summary,
    )
