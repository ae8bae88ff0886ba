"""Classification metrics from labels and scores (scikit-learn underneath).

``scores`` is always ``[N, classes]`` probabilities; for a binary model it is ``[1 - p, p]``.

Example:

>>> m = classification_metrics(y_true=np.array([0, 1, 1]), scores=np.array([[.9, .1], [.2, .8], [.6, .4]]),
...                            classes=["cat", "dog"])
>>> m["accuracy"], m["per_class"]["dog"]["recall"]
(0.6666666666666666, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

DEFAULT_ECE_BINS = 15


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int = DEFAULT_ECE_BINS) -> float:
    """Top-label ECE: mean |accuracy − confidence| over equal-width confidence bins, weighted by size."""
    confidence = scores.max(axis=1)
    correct = (scores.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def _one_vs_rest_auc(
    y_true: np.ndarray, scores: np.ndarray, present: list[int], average_precision: bool
) -> float | None:
    values = []
    for c in present:
        positives = y_true == c
        if positives.all() or not positives.any():
            continue
        fn = skm.average_precision_score if average_precision else skm.roc_auc_score
        values.append(fn(positives, scores[:, c]))
    return float(np.mean(values)) if values else None


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """accuracy, per-class precision/recall/F1, macro/weighted F1, ROC-AUC, PR-AUC, log loss, ECE."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    y_pred = scores.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()))
    if len(classes) == 2:
        both = len(present) == 2
        roc_auc = float(skm.roc_auc_score(y_true, scores[:, 1])) if both else None
        pr_auc = float(skm.average_precision_score(y_true, scores[:, 1])) if both else None
    else:
        roc_auc = _one_vs_rest_auc(y_true, scores, present, average_precision=False)
        pr_auc = _one_vs_rest_auc(y_true, scores, present, average_precision=True)
    clipped = np.clip(scores, 1e-7, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "num_examples": int(len(y_true)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": float(skm.log_loss(y_true, clipped, labels=labels)),
        "expected_calibration_error": expected_calibration_error(y_true, scores),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
