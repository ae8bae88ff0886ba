"""``imgclf reviews export``: reviewed images as a CSV manifest that ``imgclf train`` accepts.

One row per reviewed image (by content: an image reviewed twice counts once, with its latest
label), pointing into the image store. Labels outside the model's classes are kept: that is how
a new class enters the next training run. Images pruned from the store are skipped and counted.

Example:
    >>> export_reviews(engine, ImageStore(Path("imgclf_images")), Path("reviewed.csv"))
    ReviewExport(rows=120, labels={'cats': 64, 'dogs': 55, 'foxes': 1}, missing_images=0)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from imgclf.data.sources import Sample, write_manifest
from imgclf.storage.image_store import ImageStore
from imgclf.storage.predictions import reviewed_predictions


@dataclass(frozen=True)
class ReviewExport:
    rows: int
    labels: dict[str, int]
    missing_images: int


def export_reviews(engine: Engine, store: ImageStore, out: Path, since: datetime | None = None) -> ReviewExport:
    latest: dict[str, str] = {}
    for prediction in reviewed_predictions(engine, since):  # oldest review first: later ones win
        assert prediction.review_label is not None
        latest[prediction.image_sha256] = prediction.review_label
    samples, missing = [], 0
    for digest, label in latest.items():
        path = store.path(digest)
        if path.is_file():
            samples.append(Sample(path, label))
        else:
            missing += 1
    write_manifest(samples, out)
    return ReviewExport(len(samples), dict(Counter(s.label for s in samples)), missing)
