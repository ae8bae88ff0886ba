"""Temperature scaling: the run's scores made honest after training.

A fine-tuned network is usually over- or under-confident: its top score says 0.97 where it is right
nine times in ten. Temperature scaling (Guo et al., 2017) divides the scores layer's logits by one
number ``T`` fitted on the validation split by minimising its log loss. Accuracy and the ranking of
classes do not change (argmax is unchanged); the probabilities do. ``T`` is folded into the scores
layer's kernel and bias (``w / T``, ``b / T``), so the checkpoint, every export signature, TF Serving,
batch and edge exports all get calibrated scores with nothing extra to run.

``eval/calibration.json`` records ``T`` and the validation log loss before and after, and a
cross-fitted log loss (``T`` fitted on one half of the validation split, measured on the other, both
ways) so the gain is not judged only on the images it was fitted on.

Example:

>>> result = calibrate(run, prepared, spec, report=print)
>>> result["temperature"], result["log_loss_before"] > result["log_loss_after"]
(1.43, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from scipy.optimize import minimize_scalar

from imgclf.data.pipeline import make_dataset
from imgclf.data.prepare import PreparedData
from imgclf.modeling.architectures import SCORES_LAYER_NAME
from imgclf.modeling.baseline import BATCH_SIZE, scored
from imgclf.preprocessing import PreprocessingSpec
from imgclf.run_dir import RunDir, write_json

TEMPERATURE_BOUNDS = (0.2, 10.0)  # beyond these a fit says more about a tiny or separable split than the model
MIN_VALIDATION_IMAGES = 50  # below this one temperature is fitted on noise: the scores are left as trained
_EPSILON = 1e-7


def logits_of(outputs: np.ndarray) -> np.ndarray:
    """The logits behind a scores layer's outputs: ``log p`` (softmax, up to a per-row constant that
    softmax ignores) or ``log p / (1 - p)`` (one sigmoid unit)."""
    outputs = np.clip(np.asarray(outputs, dtype=np.float64), _EPSILON, 1 - _EPSILON)
    if outputs.shape[1] == 1:
        return np.log(outputs) - np.log1p(-outputs)
    return np.log(outputs)


def log_loss_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``logits / temperature``."""
    scaled = logits / temperature
    if scaled.shape[1] == 1:
        signed = np.where(labels == 1, scaled[:, 0], -scaled[:, 0])
        return float(np.mean(np.logaddexp(0.0, -signed)))
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the log loss (searched on log T within ``TEMPERATURE_BOUNDS``).

    >>> fit_temperature(np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]), np.array([0, 1, 1]))  # doctest: +SKIP
    5.2
    """
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    found = minimize_scalar(
        lambda log_t: log_loss_at(logits, labels, float(np.exp(log_t))), bounds=(low, high), method="bounded"
    )
    return float(np.exp(found.x))


def cross_fitted_log_loss(logits: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    """Log loss with ``T`` fitted on one half of the images and applied to the other, both ways."""
    if len(labels) < 4:
        return None
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    total = 0.0
    for fit_on, measure_on in (halves, halves[::-1]):
        temperature = fit_temperature(logits[fit_on], labels[fit_on])
        total += log_loss_at(logits[measure_on], labels[measure_on], temperature) * len(measure_on)
    return total / len(labels)


def fold_temperature(model: keras.Model, temperature: float) -> None:
    """Divide the scores layer's kernel and bias by ``temperature`` (its logits by ``T``), in place."""
    layer = model.get_layer(SCORES_LAYER_NAME)
    layer.set_weights([weight / temperature for weight in layer.get_weights()])


def calibrate(
    run: RunDir, prepared: PreparedData, spec: PreprocessingSpec, seed: int, report: Callable[[str], object]
) -> dict[str, Any]:
    """Fit ``T`` on the validation split, fold it into ``weights/best.keras``, write eval/calibration.json
    (with ``method`` ``none`` when the split is too small to fit on)."""
    index = prepared.class_index()
    val = prepared.split("val")
    dataset = make_dataset(
        [str(s.path) for s in val], [index[s.label] for s in val], spec, BATCH_SIZE, training=False, cache=False
    )
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    if len(val) < MIN_VALIDATION_IMAGES:
        result = {"method": "none", "split": "val", "images": len(val), "temperature": 1.0,
                  "reason": f"fewer than {MIN_VALIDATION_IMAGES} validation images"}  # fmt: skip
        write_json(run.calibration, result)
        report(f"Calibration: skipped ({result['reason']}); the scores are left as trained")
        return result
    model = keras.models.load_model(run.best_checkpoint, compile=False)
    outputs, labels = scored(model, dataset)
    logits = logits_of(outputs)
    temperature = fit_temperature(logits, labels)
    before, after = log_loss_at(logits, labels, 1.0), log_loss_at(logits, labels, temperature)
    result = {
        "method": "temperature_scaling",
        "split": "val",
        "images": int(len(labels)),
        "temperature": round(temperature, 4),
        "log_loss_before": round(before, 5),
        "log_loss_after": round(after, 5),
        "log_loss_cross_fitted": _rounded(cross_fitted_log_loss(logits, labels, seed)),
    }
    fold_temperature(model, temperature)
    model.save(run.best_checkpoint)
    write_json(run.calibration, result)
    report(
        f"Calibration: temperature {temperature:.3f} fitted on the validation split "
        f"(log loss {before:.4f} -> {after:.4f}; fitted on one half, measured on the other: "
        f"{result['log_loss_cross_fitted']})"
    )
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
