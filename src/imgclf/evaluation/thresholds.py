"""Choose a binary decision threshold for a precision or recall target, or the best F1.

The positive class is the second class (index 1). A sample is predicted positive when its
positive-class score is ≥ the threshold.

* ``target_precision=P``: the lowest threshold whose precision ≥ P (most recall at that precision);
* ``target_recall=R``: the highest threshold whose recall ≥ R (most precision at that recall);
* neither: the threshold with the highest F1.

A target that no threshold reaches is an error naming the best achievable value.

Example:

>>> choose_threshold(y_true, positive_scores, target_precision=0.99)
ThresholdChoice(threshold=0.83, objective='precision>=0.99', precision=0.99, recall=0.91, f1=0.95)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

from imgclf.errors import ConfigError


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    objective: str
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def choose_threshold(
    y_true: np.ndarray,
    positive_scores: np.ndarray,
    target_precision: float | None = None,
    target_recall: float | None = None,
) -> ThresholdChoice:
    if target_precision is not None and target_recall is not None:
        raise ConfigError("give --target-precision or --target-recall, not both")
    y_true = np.asarray(y_true)
    if y_true.min() == y_true.max():
        raise ConfigError("choosing a threshold needs both classes in the evaluation data")
    precision, recall, thresholds = precision_recall_curve(y_true, positive_scores)
    # precision/recall have one more entry than thresholds (the final point, recall 0).
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=(precision + recall) > 0
    )
    if target_precision is not None:
        ok = np.nonzero(precision >= target_precision)[0]
        if not len(ok):
            raise ConfigError(f"no threshold reaches precision {target_precision} (best: {precision.max():.4f})")
        i = int(ok[0])  # thresholds ascend: the lowest qualifying threshold keeps most recall
        objective = f"precision>={target_precision}"
    elif target_recall is not None:
        ok = np.nonzero(recall >= target_recall)[0]
        if not len(ok):
            raise ConfigError(f"no threshold reaches recall {target_recall}")
        i = int(ok[-1])  # recall falls as thresholds rise: the highest qualifying keeps precision
        objective = f"recall>={target_recall}"
    else:
        i = int(np.argmax(f1))
        objective = "best_f1"
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        objective=objective,
        precision=float(precision[i]),
        recall=float(recall[i]),
        f1=float(f1[i]),
    )
