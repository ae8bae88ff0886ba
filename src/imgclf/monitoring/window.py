"""``Window``: what monitoring knows about a set of predictions, from production or the reference.

The same structure holds the export's reference profile (validation images) and a window of
production predictions read back from the database, so every drift test compares like with like.

Example:
    >>> window = Window.from_records(records, classes=["cats", "dogs"])
    >>> window.size, window.embeddings.shape
    (200, (200, 32))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from imgclf.monitoring.input_stats import STATISTICS


def compact_embedding(values) -> list[float]:  # type: ignore[no-untyped-def]
    """An embedding as stored (database, reference profile): floats with 5 significant digits.

    >>> compact_embedding(np.float32([0.123456789, -1234567.0]))
    [0.12346, -1234600.0]
    """
    values = np.asarray(values, dtype=np.float64).tolist()
    return [float(text) for text in ("%.5g " * len(values) % tuple(values)).split()]  # one format call: half the time


@dataclass
class Window:
    classes: list[str]
    class_ids: np.ndarray  # int [n]: the predicted class
    confidence: np.ndarray  # float [n]: the score of the predicted class
    statistics: dict[str, np.ndarray]  # name → float [n'] (n' ≤ n: rows recorded without statistics are left out)
    formats: list[str]
    embeddings: np.ndarray  # float [m, k] (m ≤ n: rows recorded without an embedding are left out)
    needs_review: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    reviewed_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # one per reviewed row
    audited_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # one per reviewed audit row
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def size(self) -> int:
        return len(self.class_ids)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.class_ids, minlength=len(self.classes))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], classes: list[str]) -> Window:
        """Build from prediction rows (``label``, ``confidence``, ``input_stats``, ``embedding``, ...).

        Rows whose label is not one of ``classes`` (another version's classes) are skipped.
        """
        index = {name: i for i, name in enumerate(classes)}
        class_ids, confidence, needs_review, correct, formats, embeddings = [], [], [], [], [], []
        audited: list[bool] = []
        stats: dict[str, list[float]] = {name: [] for name in STATISTICS}
        times = []
        for row in records:
            class_id = index.get(row["label"])
            if class_id is None:
                continue
            class_ids.append(class_id)
            confidence.append(float(row["confidence"]))
            needs_review.append(bool(row.get("needs_review", False)))
            if row.get("review_label") is not None:
                correct.append(row["review_label"] == row["label"])
                if row.get("review_reason") == "audit":
                    audited.append(row["review_label"] == row["label"])
            if row.get("created_at") is not None:
                times.append(row["created_at"])
            formats.append(str(row.get("image_format") or "unknown"))
            values = row.get("input_stats")
            if values:
                for name in STATISTICS:
                    stats[name].append(float(values.get(name, np.nan)))
            if row.get("embedding"):
                embeddings.append(row["embedding"])
        width = len(embeddings[0]) if embeddings else 0
        return cls(
            classes=list(classes),
            class_ids=np.array(class_ids, dtype=np.int64),
            confidence=np.array(confidence, dtype=np.float64),
            statistics={name: np.array(values, dtype=np.float64) for name, values in stats.items()},
            formats=formats,
            embeddings=np.array(embeddings, dtype=np.float64).reshape(len(embeddings), width),
            needs_review=np.array(needs_review, dtype=bool),
            reviewed_correct=np.array(correct, dtype=bool),
            audited_correct=np.array(audited, dtype=bool),
            started_at=min(times) if times else None,
            ended_at=max(times) if times else None,
        )

    def take(self, rows: np.ndarray) -> Window:
        """The rows at ``rows`` (all per-row arrays must be complete, as for observed images)."""
        return Window(
            classes=self.classes,
            class_ids=self.class_ids[rows],
            confidence=self.confidence[rows],
            statistics={name: values[rows] for name, values in self.statistics.items()},
            formats=[self.formats[i] for i in rows],
            embeddings=self.embeddings[rows],
            needs_review=self.needs_review[rows] if len(self.needs_review) == self.size else self.needs_review,
        )
