"""Classify image files with an exported SavedModel (``imgclf predict``).

Calls the export's ``serving_default`` signature with the files' encoded bytes, exactly as a
TF Serving client would, so the answer is the one production gives. Files that are not
decodable images are reported one by one and never reach the model.

Example:

>>> model = ExportedModel.load("registry/cats_dogs")      # latest version
>>> model.classify_files(["cat.jpg"])[0].label
'cats'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from imgclf.contract import check_export, version_directories
from imgclf.data.inspection import inspect_bytes
from imgclf.errors import ExportError
from imgclf.export.savedmodel import INPUT_BYTES, SERVING_SIGNATURE
from imgclf.run_dir import read_json


@dataclass
class FilePrediction:
    path: str
    label: str | None = None
    confidence: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != {}}


def resolve_version_dir(model_dir: str | Path) -> Path:
    """A version directory as given, or the highest whole integer version under a model base path."""
    path = Path(model_dir).expanduser().resolve()
    if (path / "saved_model.pb").is_file():
        return path
    versions = [v for v in version_directories(path) if check_export(path / str(v)).complete]
    if not versions:
        raise ExportError(f"{path} is neither a SavedModel nor a directory of whole integer versions")
    return path / str(versions[-1])


@dataclass
class ExportedModel:
    path: Path
    labels: list[str]
    card: dict[str, Any]
    signature: Any
    loaded: Any = None  # the loaded SavedModel; keeps its variables alive

    @classmethod
    def load(cls, model_dir: str | Path) -> ExportedModel:
        path = resolve_version_dir(model_dir)
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ExportError(f"cannot load SavedModel {path}: {exc}") from None
        if SERVING_SIGNATURE not in loaded.signatures:
            raise ExportError(f"{path} has no {SERVING_SIGNATURE!r} signature")
        card_path = path / "assets.extra" / "model_card.json"
        card = read_json(card_path) if card_path.is_file() else {}
        labels_path = path / "assets" / "labels.txt"
        labels = labels_path.read_text(encoding="utf-8").split() if labels_path.is_file() else []
        return cls(path, labels, card, loaded.signatures[SERVING_SIGNATURE], loaded)

    def predict_bytes(self, images: list[bytes], signature: str = SERVING_SIGNATURE) -> dict[str, np.ndarray]:
        """Raw signature outputs for encoded images (all must be decodable).

        ``signature="serving_features"`` adds the full pooled ``embedding``.
        """
        function = self.signature if signature == SERVING_SIGNATURE else self.loaded.signatures[signature]
        outputs = function(**{INPUT_BYTES: tf.constant(images, dtype=tf.string)})
        return {key: value.numpy() for key, value in outputs.items()}

    def classify_files(self, paths: list[str | Path], batch_size: int = 32) -> list[FilePrediction]:
        results: list[FilePrediction] = []
        good: list[tuple[int, bytes]] = []
        for path in paths:
            path = Path(path)
            results.append(FilePrediction(path=str(path)))
            try:
                data = path.read_bytes()
            except OSError as exc:
                results[-1].error = f"cannot read: {exc.strerror or exc}"
                continue
            info = inspect_bytes(path, data)
            if not info.usable:
                results[-1].error = f"{info.status.replace('_', ' ')}: {info.error}"
                continue
            good.append((len(results) - 1, data))
        for start in range(0, len(good), batch_size):
            chunk = good[start : start + batch_size]
            outputs = self.predict_bytes([data for _, data in chunk])
            for row, (index, _) in enumerate(chunk):
                scores = outputs["scores"][row]
                label = outputs["labels"][row].decode()
                names = self.labels or [str(i) for i in range(len(scores))]
                results[index].label = label
                results[index].confidence = float(scores[names.index(label)]) if label in names else None
                results[index].scores = {n: float(s) for n, s in zip(names, scores, strict=True)}
        return results
