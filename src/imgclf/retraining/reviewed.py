"""Reviewed images from the prediction log: ``imgclf reviews export`` and retraining's input.

One entry per reviewed image (by content: an image reviewed twice counts once, with its latest
label), pointing into the image store. Labels outside the model's classes are kept: that is how
a new class enters the next training run. Images pruned from the store are skipped and counted.
Each entry says why it was queued (``review_reason``: ``audit`` items are a random sample of all
traffic, the others were chosen because the model was unsure).

Example:
    >>> export_reviews(engine, ImageStore(Path("imgclf_images")), Path("reviewed.csv"))
    ReviewExport(rows=120, labels={'cats': 64, 'dogs': 55, 'foxes': 1}, missing_images=0)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from imgclf.data.sources import Sample, write_manifest
from imgclf.storage.image_store import ImageStore
from imgclf.storage.predictions import reviewed_predictions


@dataclass(frozen=True)
class ReviewedImage:
    path: Path
    label: str
    sha256: str
    reason: str | None  # why it was queued: audit, uncertain, out_of_distribution, manual (None: not recorded)
    reviewed_at: datetime | None = None


@dataclass(frozen=True)
class ReviewExport:
    rows: int
    labels: dict[str, int]
    missing_images: int


def reviewed_images(
    engine: Engine, store: ImageStore, since: datetime | None = None
) -> tuple[list[ReviewedImage], int]:
    """The latest review of every reviewed image still in the store, and how many were pruned."""
    latest: dict[str, ReviewedImage] = {}
    audited: set[str] = set()
    for prediction in reviewed_predictions(engine, since):  # oldest review first: later ones win
        assert prediction.review_label is not None
        reason = prediction.review_reason
        if reason == "audit":
            audited.add(prediction.image_sha256)
        latest[prediction.image_sha256] = ReviewedImage(
            store.path(prediction.image_sha256), prediction.review_label, prediction.image_sha256, reason,
            prediction.reviewed_at,
        )  # fmt: skip
    kept, missing = [], 0
    for digest, image in latest.items():
        if not image.path.is_file():
            missing += 1
            continue
        # An image that was ever drawn for audit stays an audit item (its sample is what is unbiased).
        kept.append(image if digest not in audited else replace(image, reason="audit"))
    return kept, missing


def export_reviews(engine: Engine, store: ImageStore, out: Path, since: datetime | None = None) -> ReviewExport:
    images, missing = reviewed_images(engine, store, since)
    samples = [Sample(image.path, image.label) for image in images]
    write_manifest(samples, out)
    return ReviewExport(len(samples), dict(Counter(s.label for s in samples)), missing)
