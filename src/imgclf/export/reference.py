"""The reference profile of a new export, measured by the exported SavedModel itself.

Called by ``imgclf export`` on the written (not yet published) version directory: the reference
images go through the ``serving_default`` signature exactly as production traffic will, and their
input statistics are the signature's own ``input_statistics`` output, the values the gateway
records for production traffic, so the reference and production windows are measured identically
(exports made before that output existed: Pillow's measurement, as the gateway then uses).

Example:
    >>> window = observe_images(ExportedModel.load("registry/cats_dogs/3"), [open("cat.jpg", "rb").read()])
    >>> window.embeddings.shape
    (1, 32)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.contract import (
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_SCORES,
    PROJECTION_SEED,
)
from imgclf.data.prepare import usable_samples
from imgclf.evaluation.evaluate import choose_data
from imgclf.export.inference import ExportedModel
from imgclf.monitoring.input_stats import STATISTICS, image_format, image_statistics, rounded
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import Window, compact_embedding
from imgclf.run_dir import RunDir

MAX_REFERENCE_IMAGES = 2000


def observe_images(model: ExportedModel, images: list[bytes], batch_size: int = 64) -> Window:
    """Classify encoded images with the export and measure them as the gateway does."""
    class_ids, confidence, embeddings, formats = [], [], [], []
    stats: dict[str, list[float]] = {name: [] for name in STATISTICS}
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        outputs = model.predict_bytes(chunk)
        ids = outputs[OUTPUT_CLASS_IDS].astype(np.int64)
        class_ids.append(ids)
        confidence.append(outputs[OUTPUT_SCORES][np.arange(len(ids)), ids].astype(np.float64))
        embeddings.append(np.array([compact_embedding(row) for row in outputs[OUTPUT_EMBEDDING_PROJECTION]]))
        for row, data in enumerate(chunk):
            if OUTPUT_INPUT_STATISTICS in outputs:
                formats.append(image_format(data))
                values = rounded(outputs[OUTPUT_INPUT_STATISTICS][row])
            else:
                measured = image_statistics(data)
                formats.append(measured.format)
                values = measured.values
            for name in STATISTICS:
                stats[name].append(values[name])
    width = embeddings[0].shape[1] if embeddings else 0
    return Window(
        classes=list(model.labels),
        class_ids=np.concatenate(class_ids) if class_ids else np.zeros(0, np.int64),
        confidence=np.concatenate(confidence).astype(np.float64) if confidence else np.zeros(0),
        statistics={name: np.array(values, dtype=np.float64) for name, values in stats.items()},
        formats=formats,
        embeddings=np.concatenate(embeddings).astype(np.float64) if embeddings else np.zeros((0, width)),
        needs_review=np.zeros(sum(len(c) for c in class_ids), dtype=bool),
    )


def build_reference_profile(
    version_dir: Path, run: RunDir, classes: list[str], reference_data: str | None = None, seed: int = 0
) -> ReferenceProfile:
    """Observe the reference images with the SavedModel in ``version_dir``."""
    dataset, source = choose_data(run, reference_data, None)
    source = str(Path(reference_data).expanduser().resolve()) if reference_data and dataset.kind == "csv" else source
    samples, _, _ = usable_samples(dataset)
    if len(samples) > MAX_REFERENCE_IMAGES:
        rows = np.sort(np.random.default_rng(seed).choice(len(samples), MAX_REFERENCE_IMAGES, replace=False))
        samples = [samples[i] for i in rows]
    model = ExportedModel.load(version_dir)
    window = observe_images(model, [s.path.read_bytes() for s in samples])
    index = {name: i for i, name in enumerate(classes)}
    y_true = None
    if all(s.label in index for s in samples):
        y_true = np.array([index[s.label] for s in samples], dtype=np.int64)
    embedding = {
        "output": OUTPUT_EMBEDDING_PROJECTION,
        "dim": int(window.embeddings.shape[1]),
        "projection_seed": PROJECTION_SEED,
    }
    return ReferenceProfile.build(window, y_true, source, embedding, seed)
