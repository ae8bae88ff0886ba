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

from imgclf.contract import (
    INPUT_BYTES,
    LITERT_DECIDE_SIGNATURE,
    LITERT_DECODE_SIGNATURE,
    LITERT_INPUT,
    LITERT_IO_DIR,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_LABELS,
    OUTPUT_SCORES,
    SERVING_SIGNATURE,
    check_export,
    read_labels,
    read_model_card,
    tflite_variant_path,
    version_directories,
)
from imgclf.data.inspection import inspect_bytes
from imgclf.errors import ExportError


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
        try:
            card = read_model_card(path)
        except ExportError:
            card = {}  # a SavedModel from elsewhere: no card, and its labels (if any) say the classes
        return cls(path, read_labels(path), card, loaded.signatures[SERVING_SIGNATURE], loaded)

    def predict_bytes(self, images: list[bytes], signature: str = SERVING_SIGNATURE) -> dict[str, np.ndarray]:
        """Raw signature outputs for encoded images (all must be decodable).

        ``signature=FEATURES_SIGNATURE`` adds the full pooled ``embedding``.
        """
        function = self.signature if signature == SERVING_SIGNATURE else self.loaded.signatures[signature]
        outputs = function(**{INPUT_BYTES: tf.constant(images, dtype=tf.string)})
        return {key: value.numpy() for key, value in outputs.items()}

    def classify_files(self, paths: list[str | Path], batch_size: int = 32) -> list[FilePrediction]:
        """One result per path, in order; unreadable or undecodable files get ``error`` instead.
        Files are read one batch at a time, so a folder of any size fits in memory."""
        results: list[FilePrediction] = []
        for start in range(0, len(paths), batch_size):
            named: list[tuple[str, bytes, str | None]] = []
            for path in paths[start : start + batch_size]:
                try:
                    named.append((str(path), Path(path).read_bytes(), None))
                except OSError as exc:
                    named.append((str(path), b"", f"cannot read: {exc.strerror or exc}"))
            results += self._classify(named, batch_size)
        return results

    def classify_bytes(self, named: list[tuple[str, bytes]], batch_size: int = 32) -> list[FilePrediction]:
        """Like ``classify_files`` for encoded images in memory, each with a name for messages."""
        return self._classify([(name, data, None) for name, data in named], batch_size)

    def _classify(self, named: list[tuple[str, bytes, str | None]], batch_size: int) -> list[FilePrediction]:
        results: list[FilePrediction] = []
        good: list[tuple[int, bytes]] = []
        for name, data, error in named:
            results.append(FilePrediction(path=name, error=error))
            if error is not None:
                continue
            info = inspect_bytes(Path(name), data)
            if not info.usable:
                results[-1].error = f"{info.status.replace('_', ' ')}: {info.error}"
                continue
            good.append((len(results) - 1, data))
        for start in range(0, len(good), batch_size):
            chunk = good[start : start + batch_size]
            outputs = self.predict_bytes([data for _, data in chunk])
            for row, (index, _) in enumerate(chunk):
                scores = outputs[OUTPUT_SCORES][row]
                label = outputs[OUTPUT_LABELS][row].decode()
                names = self.labels or [str(i) for i in range(len(scores))]
                results[index].label = label
                results[index].confidence = float(scores[names.index(label)]) if label in names else None
                results[index].scores = {n: float(s) for n, s in zip(names, scores, strict=True)}
        return results


@dataclass
class LiteRTExportedModel(ExportedModel):
    """An export's LiteRT variant, used like ``ExportedModel``: encoded bytes in, the same outputs.

    Decoding and the decision run through the export's ``assets.extra/litert_io`` SavedModel (the
    graphs ``imgclf.preprocessing`` and the export's threshold made); the network runs on the LiteRT
    interpreter. Outputs: ``scores``, ``class_ids``, ``labels``, ``input_statistics`` (no embedding).
    """

    variant: str = ""
    runtime: Any = None  # imgclf.serving.litert.LiteRTModel

    @classmethod
    def load_variant(cls, model_dir: str | Path, variant: str) -> LiteRTExportedModel:
        from imgclf.serving.litert import LiteRTModel

        path = resolve_version_dir(model_dir)
        file = tflite_variant_path(path, variant)
        try:
            io = tf.saved_model.load(str(path / LITERT_IO_DIR))
        except Exception as exc:
            raise ExportError(f"cannot load {path / LITERT_IO_DIR} (the LiteRT variant's decoder): {exc}") from None
        return cls(path, read_labels(path), read_model_card(path), None, io, variant=variant, runtime=LiteRTModel(file))

    def decode(self, images: list[bytes]) -> dict[str, np.ndarray]:
        """``normalized_pixels``, ``pixels`` and ``input_statistics`` of encoded images (all decodable)."""
        decoded = self.loaded.signatures[LITERT_DECODE_SIGNATURE](**{INPUT_BYTES: tf.constant(images, tf.string)})
        return {key: value.numpy() for key, value in decoded.items()}

    def predict_bytes(self, images: list[bytes], signature: str = SERVING_SIGNATURE) -> dict[str, np.ndarray]:
        if signature != SERVING_SIGNATURE:
            raise ExportError(f"a LiteRT variant answers {SERVING_SIGNATURE!r} only, not {signature!r}")
        decoded = self.decode(images)
        scores = self.runtime.run(decoded[LITERT_INPUT])
        decided = self.loaded.signatures[LITERT_DECIDE_SIGNATURE](**{OUTPUT_SCORES: tf.constant(scores)})
        return {
            OUTPUT_SCORES: scores,
            **{key: value.numpy() for key, value in decided.items()},
            OUTPUT_INPUT_STATISTICS: decoded[OUTPUT_INPUT_STATISTICS],
        }
