"""``imgclf data check``: what is wrong with a dataset before anyone trains on it.

Reports images per class and split, class imbalance, files that are not images, do not decode,
are truncated or lie about their format in the extension, byte-identical and near-duplicate
images (within a class, across classes = conflicting labels, across splits = leakage), tiny
images and grayscale/CMYK/alpha/animated images. Never modifies the source files.

Example:

>>> report = check_dataset(load_dataset("data/flowers"))
>>> report.summary["conflicting_labels"], report.summary["leakage"]
(1, 5)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.data.duplicates import DuplicateGroup, Duplicates, find_duplicates
from imgclf.data.inspection import ImageInfo, inspect_images
from imgclf.data.sources import Dataset, Sample
from imgclf.errors import ConfigError, DatasetError

DEFAULT_MIN_SIDE = 32
_UNUSABLE = ("empty", "not_image", "truncated", "corrupt", "unsupported_format")
# Short names `--fail-on` also accepts.
CHECK_ALIASES = {
    "conflicts": "conflicting_labels",
    "duplicates": "duplicates_within_class",
    "tiny": "tiny_images",
    "corrupt": "unusable",
}
EXCLUDABLE = ("conflicting_labels", "leakage", "unusable")


@dataclass
class DataReport:
    """The result of checking a dataset; ``to_dict()`` is the JSON written by ``--json``."""

    root: str
    kind: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    imbalance_ratio: float
    unusable: list[dict[str, Any]] = field(default_factory=list)
    extension_mismatch: list[dict[str, Any]] = field(default_factory=list)
    exact_duplicates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    near_duplicates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tiny_images: list[dict[str, Any]] = field(default_factory=list)
    color_modes: dict[str, list[str]] = field(default_factory=dict)
    animated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_files(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    @property
    def summary(self) -> dict[str, int]:
        """How many problems of each kind; all zero for a clean dataset."""

        def groups(kind: str) -> int:
            return len(self.exact_duplicates.get(kind, [])) + len(self.near_duplicates.get(kind, []))

        return {
            "files": self.total_files,
            "unusable": len(self.unusable),
            "extension_mismatch": len(self.extension_mismatch),
            "duplicates_within_class": groups("within_class"),
            "conflicting_labels": groups("across_classes"),
            "leakage": groups("across_splits"),
            "tiny_images": len(self.tiny_images),
            "grayscale": len(self.color_modes.get("grayscale", [])),
            "cmyk": len(self.color_modes.get("cmyk", [])),
            "alpha": len(self.color_modes.get("alpha", [])),
            "animated": len(self.animated),
            "one_class": int(len(self.classes) < 2),
        }

    def failures(self, checks: Iterable[str]) -> dict[str, int]:
        """The ``checks`` (summary keys or their short names) that found something: name -> count."""
        found = {}
        for check in checks:
            key = CHECK_ALIASES.get(check.strip().lower().replace("-", "_"), check.strip().lower().replace("-", "_"))
            if key not in self.summary or key == "files":
                known = ", ".join(sorted({*CHECK_ALIASES, *self.summary} - {"files"}))
                raise ConfigError(f"unknown check {check!r} for --fail-on; use any of: {known}")
            if self.summary[key]:
                found[key] = self.summary[key]
        return found

    @property
    def problem_count(self) -> int:
        return sum(v for k, v in self.summary.items() if k != "files")

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "kind": self.kind,
            "classes": self.classes,
            "counts": self.counts,
            "imbalance_ratio": self.imbalance_ratio,
            "summary": self.summary,
            "unusable": self.unusable,
            "extension_mismatch": self.extension_mismatch,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "tiny_images": self.tiny_images,
            "color_modes": self.color_modes,
            "animated": self.animated,
            "warnings": self.warnings,
        }


def imbalance_ratio(dataset: Dataset) -> float:
    """Largest class over smallest class, over every file and every class of the dataset."""
    per_class = Counter(sample.label for sample in dataset.samples)
    if not per_class:
        return 1.0
    return round(max(per_class.values()) / min(per_class.values()), 3)


def load_flagged_files(report_json: str | Path) -> list[Path]:
    """``flagged_files`` of a report file; a file that is not such a report raises DatasetError."""
    try:
        report = json.loads(Path(report_json).read_text(encoding="utf-8"))
        return flagged_files(report)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(
            f"--exclude {report_json}: not a readable `imgclf data check --json` report ({exc})"
        ) from None


def flagged_files(report: dict[str, Any], checks: Iterable[str] = EXCLUDABLE) -> list[Path]:
    """Files a ``data check --json`` report flags, as absolute paths, for ``train --exclude``.

    ``conflicting_labels``: every copy (its label is in doubt); ``leakage``: every copy outside the
    train split (the training copy stays); ``unusable``: the file.
    """
    root = Path(report["root"])
    flagged: list[str] = []
    checks = set(checks)
    groups: dict[str, list[dict[str, Any]]] = {"across_classes": [], "across_splits": []}
    for kind in groups:
        for section in ("exact_duplicates", "near_duplicates"):
            groups[kind] += report.get(section, {}).get(kind, [])
    if "conflicting_labels" in checks:
        flagged += [f["path"] for g in groups["across_classes"] for f in g["files"]]
    if "leakage" in checks:
        flagged += [f["path"] for g in groups["across_splits"] for f in g["files"] if f.get("split") != "train"]
    if "unusable" in checks:
        flagged += [u["path"] for u in report.get("unusable", [])]
    return sorted({(root / p).resolve() for p in flagged})


def _group_kinds(group: DuplicateGroup, samples: list[Sample]) -> list[str]:
    labels = {samples[i].label for i in group.members}
    splits = {samples[i].split for i in group.members if samples[i].split is not None}
    kinds = []
    if len(labels) > 1:
        kinds.append("across_classes")
    if len(splits) > 1:
        kinds.append("across_splits")
    return kinds or ["within_class"]


def _describe_groups(
    groups: list[DuplicateGroup],
    samples: list[Sample],
    root: str,
    similarity: dict[tuple[int, int], float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    described: dict[str, list[dict[str, Any]]] = {
        "within_class": [],
        "across_classes": [],
        "across_splits": [],
    }
    for group in groups:
        files = [
            {"path": _relative(samples[i].path, root), "label": samples[i].label, "split": samples[i].split}
            for i in group.members
        ]
        entry: dict[str, Any] = {"files": files}
        if similarity is not None:
            # Thumbnail correlation of each near pair in the group (1.0 would be identical pixels).
            entry["pairs"] = [
                {
                    "a": _relative(samples[i].path, root),
                    "b": _relative(samples[j].path, root),
                    "similarity": round(c, 4),
                }
                for (i, j), c in sorted(similarity.items())
                if i in group.members and j in group.members
            ]
        else:
            entry["similarity"] = 1.0  # byte-identical
        for kind in _group_kinds(group, samples):
            described[kind].append(entry)
    return described


def _relative(path: Path, root: str) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def check_dataset(
    dataset: Dataset,
    min_side: int = DEFAULT_MIN_SIDE,
    infos: list[ImageInfo] | None = None,
    duplicates: Duplicates | None = None,
) -> DataReport:
    """Inspect every file of ``dataset`` and report what is wrong. Reads, never writes."""
    samples = dataset.samples
    infos = infos if infos is not None else inspect_images([s.path for s in samples])
    duplicates = duplicates if duplicates is not None else find_duplicates(infos)
    root = str(dataset.root)
    report = DataReport(
        root=root,
        kind=dataset.kind,
        classes=dataset.classes,
        counts=dataset.counts(),
        imbalance_ratio=imbalance_ratio(dataset),
        color_modes={"grayscale": [], "cmyk": [], "alpha": []},
    )
    for sample, info in zip(samples, infos, strict=True):
        name = _relative(sample.path, root)
        if info.status in _UNUSABLE:
            report.unusable.append({"path": name, "problem": info.status, "detail": info.error})
        if info.extension_mismatch:
            report.extension_mismatch.append(
                {"path": name, "extension": sample.path.suffix, "actual_format": info.format}
            )
        if info.width is not None and info.height is not None and min(info.width, info.height) < min_side:
            report.tiny_images.append({"path": name, "width": info.width, "height": info.height})
        if info.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "F"):
            report.color_modes["grayscale"].append(name)
        elif info.mode == "CMYK":
            report.color_modes["cmyk"].append(name)
        if info.has_alpha:
            report.color_modes["alpha"].append(name)
        if info.frames > 1:
            report.animated.append(name)
    report.exact_duplicates = _describe_groups(duplicates.exact, samples, root)
    pairs = {(i, j): c for i, j, c in duplicates.near_pairs}
    report.near_duplicates = _describe_groups(duplicates.near_groups(), samples, root, pairs)
    if len(report.classes) < 2:
        report.warnings.append(
            f"only one class ({', '.join(report.classes) or 'none'}): a classifier needs at least two; "
            "are the images in ROOT/<class>/ folders?"
        )
    per_class = Counter(s.label for s in samples)
    too_few = sorted(name for name, n in per_class.items() if n < 2)
    if too_few:
        report.warnings.append(f"class(es) with fewer than 2 images: {', '.join(too_few)}")
    return report
