"""Prediction quality without labels, and with the labels reviewers gave.

* ``estimated_accuracy`` — CBPE-style (NannyML's confidence-based performance estimation): the
  mean, over the window, of the calibrated probability that each prediction is right, using the
  isotonic map fitted on the reference images at export. Valid while the relation between
  confidence and correctness holds (covariate shift), not under concept drift.
* ``realized_accuracy`` — the share of reviewed predictions whose review label equals the
  predicted label. Reviewers see mostly uncertain predictions (``needs_review``), so this is a
  pessimistic figure, not the accuracy on all traffic.
* ``audited_accuracy`` — the same on audit reviews only: predictions drawn at random from all
  traffic (``IMGCLF_REVIEW_AUDIT_RATE``), whatever their confidence, so an unbiased estimate of the
  accuracy on all traffic, with its 95 % Wilson interval (``audited_interval``).

Example:
    >>> summarize_quality(window, profile).estimated_accuracy
    0.951
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclf.monitoring.intervals import wilson_interval
from imgclf.monitoring.window import Window


@dataclass(frozen=True)
class QualitySummary:
    predictions: int
    mean_confidence: float | None
    needs_review_rate: float | None
    estimated_accuracy: float | None
    reference_accuracy: float | None
    reviewed: int
    realized_accuracy: float | None
    audited: int = 0
    audited_accuracy: float | None = None
    audited_interval: tuple[float, float] | None = None


def summarize_quality(window: Window, profile=None) -> QualitySummary:  # type: ignore[no-untyped-def]
    """Quality figures for ``window``; ``profile`` (a ReferenceProfile) supplies the calibration."""
    n = window.size
    calibration = getattr(profile, "calibration", None)
    estimated = float(np.mean(calibration(window.confidence))) if calibration is not None and n else None
    reviewed = len(window.reviewed_correct)
    audited = len(window.audited_correct)
    return QualitySummary(
        predictions=n,
        mean_confidence=float(window.confidence.mean()) if n else None,
        needs_review_rate=float(window.needs_review.mean()) if len(window.needs_review) else None,
        estimated_accuracy=estimated,
        reference_accuracy=getattr(profile, "accuracy", None),
        reviewed=reviewed,
        realized_accuracy=float(window.reviewed_correct.mean()) if reviewed else None,
        audited=audited,
        audited_accuracy=float(window.audited_correct.mean()) if audited else None,
        audited_interval=wilson_interval(int(window.audited_correct.sum()), audited),
    )
