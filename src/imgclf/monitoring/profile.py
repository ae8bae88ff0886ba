"""The reference profile stored with every export (``assets.extra/reference_profile.json``).

``imgclf export`` classifies the reference images (the run's validation split by default) with
the exported SavedModel itself and records what production will later be compared with: the
predicted-class counts, every confidence, the input statistics of every image, the formats, a
sample of embeddings (the signature's ``embedding_projection`` output), the accuracy on those
images, a calibration map from confidence to the chance of being right, fitted by isotonic
regression (the basis of the label-free accuracy estimate, ``imgclf.monitoring.quality``), and the
out-of-distribution threshold calibrated on the embedding sample (``imgclf.monitoring.ood``; the
``ood`` key: profiles written before it have none, and their predictions get no ``ood_score``).

Example:
    >>> profile = ReferenceProfile.load("registry/cats_dogs/3")
    >>> profile.window.size, profile.accuracy
    (1000, 0.97)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.contract import REFERENCE_PROFILE_FILE
from imgclf.errors import MonitoringError
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.ood import OutOfDistribution
from imgclf.monitoring.window import Window, compact_embedding

MAX_EMBEDDING_SAMPLE = 1000
_SCHEMA = 1


@dataclass(frozen=True)
class Calibration:
    """A non-decreasing map confidence → probability that the prediction is right (isotonic fit)."""

    confidence: list[float]
    accuracy: list[float]

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(confidence, correct.astype(float))
        return cls([float(x) for x in iso.X_thresholds_], [float(y) for y in iso.y_thresholds_])

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(confidence, self.confidence, self.accuracy)


@dataclass(frozen=True)
class ReferenceProfile:
    window: Window
    accuracy: float | None  # on the reference images, when their labels are known
    calibration: Calibration | None
    source: str
    embedding: dict[str, Any]  # how the signature projects embeddings: input_dim, dim, seed
    ood: OutOfDistribution | None = None  # over window.embeddings; None: too few of them, or an older profile

    @classmethod
    def build(
        cls,
        window: Window,
        y_true: np.ndarray | None,
        source: str,
        embedding: dict[str, Any],
        seed: int = 0,
    ) -> ReferenceProfile:
        """A profile from observed reference images; ``y_true`` (class ids) enables accuracy and calibration."""
        accuracy = calibration = None
        if y_true is not None and len(y_true) == window.size and window.size:
            correct = window.class_ids == y_true
            accuracy = float(correct.mean())
            calibration = Calibration.fit(window.confidence, correct)
        if len(window.embeddings) > MAX_EMBEDDING_SAMPLE:
            rows = np.sort(np.random.default_rng(seed).choice(len(window.embeddings), MAX_EMBEDDING_SAMPLE, False))
            window = dataclasses.replace(window, embeddings=window.embeddings[rows])
        # Calibrated on the embeddings exactly as stored (5 significant digits), which the gateway scores against.
        stored = np.array([compact_embedding(row) for row in window.embeddings]).reshape(window.embeddings.shape)
        return cls(window, accuracy, calibration, source, embedding, OutOfDistribution.calibrate(stored))

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "schema": _SCHEMA,
            "source": self.source,
            "classes": w.classes,
            "size": w.size,
            "accuracy": self.accuracy,
            "calibration": None if self.calibration is None else self.calibration.__dict__,
            "class_ids": w.class_ids.tolist(),
            "confidence": [float(c) for c in w.confidence],
            "statistics": {name: [float(v) for v in w.statistics[name]] for name in STATISTICS},
            "formats": w.formats,
            "embedding": self.embedding,
            "embeddings": [compact_embedding(row) for row in w.embeddings],
            "ood": None if self.ood is None else self.ood.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("schema") != _SCHEMA:
            raise MonitoringError(f"unsupported reference profile schema {data.get('schema')!r}")
        embeddings = np.array(data["embeddings"], dtype=np.float64)
        window = Window(
            classes=list(data["classes"]),
            class_ids=np.array(data["class_ids"], dtype=np.int64),
            confidence=np.array(data["confidence"], dtype=np.float64),
            statistics={name: np.array(data["statistics"][name], dtype=np.float64) for name in STATISTICS},
            formats=list(data["formats"]),
            embeddings=embeddings.reshape(len(embeddings), -1) if len(embeddings) else np.zeros((0, 0)),
        )
        calibration = Calibration(**data["calibration"]) if data.get("calibration") else None
        ood = OutOfDistribution.from_dict(data["ood"], window.embeddings) if data.get("ood") else None
        return cls(window, data.get("accuracy"), calibration, data.get("source", ""), data.get("embedding", {}), ood)

    def save(self, version_dir: Path) -> Path:
        path = Path(version_dir) / REFERENCE_PROFILE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        return path

    @classmethod
    def load(cls, version_dir: str | Path) -> ReferenceProfile:
        path = Path(version_dir) / REFERENCE_PROFILE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MonitoringError(
                f"{Path(version_dir)} has no reference profile ({REFERENCE_PROFILE_FILE}); "
                "re-export it with this imgclf"
            ) from None
        except (OSError, ValueError) as error:
            raise MonitoringError(f"cannot read {path}: {error}") from None
        return cls.from_dict(data)
