"""Metrics, calibration error and threshold choice on constructed inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.errors import ConfigError
from imgclf.evaluation.metrics import classification_metrics, expected_calibration_error
from imgclf.evaluation.thresholds import choose_threshold


def test_perfect_predictions():
    y = np.array([0, 1, 2, 2])
    scores = np.eye(3)[y] * 0.9 + 0.1 / 3
    m = classification_metrics(y, scores, ["a", "b", "c"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["roc_auc"] == 1.0
    assert m["per_class"]["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]


def test_binary_metrics_and_mistakes():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.6, 0.7, 0.4])
    m = classification_metrics(y, np.stack([1 - p, p], 1), ["neg", "pos"])
    assert m["accuracy"] == 0.5
    assert m["per_class"]["pos"]["precision"] == 0.5
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["log_loss"] > 0


def test_ece_of_a_calibrated_and_an_overconfident_model():
    y = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))  # says 80% and is right 80% of the time
    assert expected_calibration_error(y, calibrated) == pytest.approx(0.0, abs=1e-9)
    overconfident = np.tile([0.99, 0.01], (10, 1))
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.19, abs=1e-9)


def test_threshold_for_precision_recall_and_f1():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    strict = choose_threshold(y, p, target_precision=1.0)
    assert strict.threshold == pytest.approx(0.6) and strict.recall == 0.75
    lenient = choose_threshold(y, p, target_recall=1.0)
    assert lenient.threshold == pytest.approx(0.4) and lenient.precision == 0.8
    best = choose_threshold(y, p)
    assert best.objective == "best_f1" and best.f1 == pytest.approx(max(strict.f1, lenient.f1))


def test_unreachable_targets_are_errors():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.9, 0.1, 0.8, 0.2])
    with pytest.raises(ConfigError, match="no threshold reaches precision"):
        choose_threshold(y, p, target_precision=0.99)
    with pytest.raises(ConfigError, match="not both"):
        choose_threshold(y, p, target_precision=0.5, target_recall=0.5)
