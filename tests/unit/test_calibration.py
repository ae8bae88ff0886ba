"""Temperature scaling after training (issue 21: ECE): the fitted temperature, the folded scores layer,
and what a run records."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from imgclf.modeling.architectures import SCORES_LAYER_NAME, build_model
from imgclf.modeling.calibration import (
    MIN_VALIDATION_IMAGES,
    TEMPERATURE_BOUNDS,
    fit_temperature,
    fold_temperature,
    log_loss_at,
    logits_of,
)


def _sampled(true_temperature: float, classes: int, n: int = 4000, seed: int = 0):
    """Labels drawn from softmax(logits / T): the best temperature for ``logits`` is ``T``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, classes))
    scaled = logits / true_temperature
    probs = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_recovers_the_one_the_labels_were_drawn_with(true_temperature):
    logits, labels = _sampled(true_temperature, classes=5)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    assert log_loss_at(logits, labels, fitted) <= log_loss_at(logits, labels, 1.0)


def test_one_sigmoid_unit_is_calibrated_on_its_logit():
    rng = np.random.default_rng(1)
    logit = rng.normal(0.0, 4.0, size=(4000, 1))
    labels = (rng.random(4000) < 1 / (1 + np.exp(-logit[:, 0] / 2.0))).astype(int)
    probabilities = 1 / (1 + np.exp(-logit))
    assert np.allclose(logits_of(probabilities), logit, atol=1e-4)
    assert fit_temperature(logits_of(probabilities), labels) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("classes", [2, 4])
def test_folding_the_temperature_divides_the_logits_and_keeps_every_argmax(classes):
    keras.utils.set_random_seed(3)
    model = build_model("small_cnn", classes, 32, None, "none")
    layer = model.get_layer(SCORES_LAYER_NAME)
    layer.set_weights([w * 40 for w in layer.get_weights()])  # confident scores
    pixels = np.random.default_rng(2).uniform(-1, 1, size=(16, 32, 32, 3)).astype(np.float32)
    before = np.asarray(model(pixels))
    fold_temperature(model, 2.5)
    after = np.asarray(model(pixels))
    if classes == 2:  # one sigmoid unit: its logit is known exactly
        assert np.allclose(logits_of(after), logits_of(before) / 2.5, atol=2e-3)
        assert ((after[:, 0] > 0.5) == (before[:, 0] > 0.5)).all()
    else:  # softmax logits are known up to a per-row constant: compare log-ratios
        ratio_before = np.log(before[:, 1:]) - np.log(before[:, :1])
        ratio_after = np.log(after[:, 1:]) - np.log(after[:, :1])
        assert np.allclose(ratio_after, ratio_before / 2.5, atol=2e-3)
        assert (after.argmax(axis=1) == before.argmax(axis=1)).all()


def test_a_trained_run_records_its_temperature_and_its_scores_use_it(binary_run):
    result = json.loads(binary_run.calibration.read_text())
    assert result["method"] == "temperature_scaling" and result["split"] == "val"
    assert result["images"] >= MIN_VALIDATION_IMAGES
    assert TEMPERATURE_BOUNDS[0] <= result["temperature"] <= TEMPERATURE_BOUNDS[1]
    assert result["log_loss_after"] <= result["log_loss_before"] + 1e-9
    assert result["log_loss_cross_fitted"] is not None


def test_a_validation_split_too_small_to_fit_on_leaves_the_scores_as_trained(shapes_run):
    result = json.loads(shapes_run.calibration.read_text())
    assert result["method"] == "none" and result["temperature"] == 1.0
    assert result["images"] < MIN_VALIDATION_IMAGES and "fewer than" in result["reason"]
