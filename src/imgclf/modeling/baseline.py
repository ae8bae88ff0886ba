"""The baseline guard: a linear classifier on the frozen backbone's pooled features, beside every
pretrained run.

Fine-tuning can make a model worse than the simplest baseline (heavy augmentation on the wrong
data, too few images, class imbalance). After training, a logistic regression (scikit-learn, its
regularisation chosen by cross-validation on the training split) is fitted on the pretrained
backbone's pooled features of the training images, without augmentation, and both models are
scored on the validation split. The probe costs one forward pass over the data: seconds to a
minute on a laptop.

The probe is saved as ``weights/linear_probe.keras``, a checkpoint of the run's own architecture
(the pretrained backbone, with the regression folded into the scores layer), so every later step
(evaluate, export, serve) can use it unchanged. When it beats the fine-tuned model on validation
the run says so loudly; with ``keep_best`` (``imgclf train --keep-best``) it becomes the run's
model (``weights/best.keras``; the fine-tuned one is kept as ``weights/fine_tuned.keras``).
``eval/baseline.json`` records both.

Example:

>>> result = guard(config, run, prepared, spec, report=print)
>>> result["better"], result["linear_probe"]["accuracy"]
('fine_tuned', 0.967)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss

from imgclf.config import TrainConfig
from imgclf.data.pipeline import make_dataset
from imgclf.data.prepare import PreparedData
from imgclf.modeling.architectures import EMBEDDING_LAYER_NAME, SCORES_LAYER_NAME, build_model, class_scores
from imgclf.preprocessing import PreprocessingSpec
from imgclf.run_dir import RunDir, write_json

PROBE_REGULARISATION = (0.01, 0.1, 1.0)  # C values tried by 3-fold cross-validation on the training split
BATCH_SIZE = 64


def scored(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs and the labels, batch by batch (labels taken from the same batches)."""
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    outputs, labels = [], []
    for pixels, label in dataset:
        outputs.append(np.asarray(forward(pixels)))
        labels.append(label.numpy())
    return np.concatenate(outputs), np.concatenate(labels)


def _metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    scores = np.clip(scores, 1e-7, 1.0)
    return {
        "accuracy": float(accuracy_score(labels, scores.argmax(axis=1))),
        "log_loss": float(log_loss(labels, scores / scores.sum(axis=1, keepdims=True), labels=range(scores.shape[1]))),
    }


def fit_linear_probe(
    config: TrainConfig, prepared: PreparedData, spec: PreprocessingSpec, balanced: bool
) -> tuple[keras.Model, dict[str, Any]]:
    """The pretrained backbone with a logistic regression on its pooled features as the scores layer."""
    started = time.perf_counter()
    index = prepared.class_index()
    num_classes = len(prepared.classes)
    model = build_model(config.model, num_classes, spec.image_size, config.alpha, config.weights)
    features_model = keras.Model(model.input, model.get_layer(EMBEDDING_LAYER_NAME).output)

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        samples = prepared.split(split)
        paths, labels = [str(s.path) for s in samples], [index[s.label] for s in samples]
        return scored(features_model, make_dataset(paths, labels, spec, BATCH_SIZE, training=False, cache=False))

    x_train, y_train = features("train")
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    regression = LogisticRegressionCV(
        Cs=list(PROBE_REGULARISATION),
        cv=3,
        max_iter=2000,
        scoring="neg_log_loss",
        class_weight="balanced" if balanced else None,
        random_state=config.seed,
    )
    regression.fit((x_train - mean) / scale, y_train)
    # Fold the standardisation into the weights: w' = w / scale, b' = b - sum(w * mean / scale).
    coef = regression.coef_ / scale
    bias = regression.intercept_ - coef @ mean
    scores_layer = model.get_layer(SCORES_LAYER_NAME)
    scores_layer.set_weights([coef.T.astype(np.float32), bias.astype(np.float32)])
    c_value = np.atleast_1d(regression.C_)[0]
    return model, {"C": float(c_value), "fit_seconds": round(time.perf_counter() - started, 1)}


def guard(
    config: TrainConfig,
    run: RunDir,
    prepared: PreparedData,
    spec: PreprocessingSpec,
    balanced: bool,
    report: Callable[[str], object],
) -> dict[str, Any]:
    """Fit the probe, compare it with the fine-tuned checkpoint on validation, write eval/baseline.json."""
    report("Fitting the baseline: a linear classifier on the frozen backbone's features ...")
    probe, fit = fit_linear_probe(config, prepared, spec, balanced)
    probe_path = run.best_checkpoint.parent / "linear_probe.keras"
    probe.save(probe_path)
    index = prepared.class_index()
    val = prepared.split("val")
    dataset = make_dataset(
        [str(s.path) for s in val], [index[s.label] for s in val], spec, BATCH_SIZE, training=False, cache=False
    )
    fine_tuned = keras.models.load_model(run.best_checkpoint, compile=False)
    probe_scores, labels = scored(probe, dataset)
    model_scores, _ = scored(fine_tuned, dataset)
    probe_metrics = _metrics(labels, np.asarray(class_scores(probe_scores)))
    model_metrics = _metrics(labels, np.asarray(class_scores(model_scores)))
    probe_wins = probe_metrics["accuracy"] > model_metrics["accuracy"]  # worse = less accurate on validation
    kept = "fine_tuned"
    if probe_wins and config.keep_best:
        shutil.copy2(run.best_checkpoint, run.best_checkpoint.parent / "fine_tuned.keras")
        shutil.copy2(probe_path, run.best_checkpoint)
        kept = "linear_probe"
    result = {
        "split": "val",
        "images": int(len(labels)),
        "fine_tuned": model_metrics,
        "linear_probe": {**probe_metrics, **fit, "checkpoint": str(probe_path.relative_to(run.path))},
        "better": "linear_probe" if probe_wins else "fine_tuned",
        "kept": kept,
    }
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.baseline, result)
    summary = (
        f"validation accuracy {model_metrics['accuracy']:.4f} (log loss {model_metrics['log_loss']:.4f}); "
        f"linear probe on frozen features {probe_metrics['accuracy']:.4f} ({probe_metrics['log_loss']:.4f})"
    )
    if not probe_wins:
        report(f"Baseline guard: {summary}")
    elif kept == "linear_probe":
        report(f"WARNING: the fine-tuned model is worse than the linear probe: {summary}. Kept the probe (--keep-best)")
    else:
        report(
            f"WARNING: the fine-tuned model is WORSE than a linear classifier on the frozen backbone: {summary}. "
            f"Train again with --keep-best to keep the better one (saved as {probe_path}), or change the recipe."
        )
    return result
