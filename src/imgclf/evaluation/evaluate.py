"""``imgclf evaluate``: metrics, plots and a decision threshold for a trained run.

By default the run's own validation split is evaluated. ``data`` may name any dataset whose class
names are a subset of the model's: a folder without split folders is evaluated whole, one with
split folders (or a manifest with a split column) by its ``split`` (default ``val``, else
``test``). Results go to ``RUN_DIR/eval/``:

* ``metrics.json`` — accuracy, per-class precision/recall/F1, macro/weighted F1, ROC-AUC, PR-AUC,
  log loss, expected calibration error, confusion matrix, and (binary) the chosen threshold;
* ``threshold.json`` (binary) — used by ``imgclf export``;
* ``confusion_matrix.png``, ``confusion_matrix_normalized.png``, ``roc_curve.png``,
  ``pr_curve.png``, ``reliability.png``, ``worst_mistakes.png``; ``predictions.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from imgclf.config import TrainConfig
from imgclf.data.pipeline import make_dataset
from imgclf.data.prepare import usable_samples
from imgclf.data.sources import Dataset, load_dataset
from imgclf.errors import DatasetError
from imgclf.evaluation import plots
from imgclf.evaluation.metrics import classification_metrics
from imgclf.evaluation.thresholds import choose_threshold
from imgclf.modeling.architectures import class_scores
from imgclf.modeling.training import preprocessing_spec
from imgclf.run_dir import RunDir, read_json, write_json


@dataclass
class Predictions:
    paths: list[str]
    y_true: np.ndarray
    scores: np.ndarray  # [N, classes]


def choose_data(run: RunDir, data: str | None, split: str | None) -> tuple[Dataset, str]:
    """The run's validation split, or ``data`` (whole if unsplit, else its ``split``, default ``val``)."""
    if data is None:
        return load_dataset(run.manifest).subset(split or "val"), f"run {split or 'val'} split"
    dataset = load_dataset(data)
    if not dataset.has_splits:
        if split:
            raise DatasetError(f"{data} has no split folders; drop --split to evaluate it whole")
        return dataset, str(dataset.root)
    if split is None:
        split = "val" if "val" in dataset.split_names else dataset.split_names[-1]
    return dataset.subset(split), f"{dataset.root} ({split})"


def predict_files(model: keras.Model, config: TrainConfig, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Class scores [N, classes] for image files, through the training preprocessing path."""
    spec = preprocessing_spec(config)
    order = np.arange(len(paths), dtype=np.int32)
    dataset = make_dataset(paths, order, spec, batch_size, training=False, cache=False)
    forward = tf.function(lambda x: class_scores(model(x, training=False)), reduce_retracing=True)
    indices, outputs = [], []
    for pixels, index in dataset:
        outputs.append(forward(pixels).numpy())
        indices.append(index.numpy())
    found = np.concatenate(indices) if indices else np.array([], np.int32)
    if len(found) != len(paths):
        missing = sorted(set(range(len(paths))) - set(found.tolist()))
        raise DatasetError(f"TensorFlow could not decode {len(missing)} file(s), first: {paths[missing[0]]}")
    scores = np.concatenate(outputs)
    return scores[np.argsort(found)]


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    target_precision: float | None = None,
    target_recall: float | None = None,
) -> dict[str, Any]:
    """Evaluate a run; write ``RUN_DIR/eval/``; return the metrics."""
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.require_trained()
    config = TrainConfig.load(run.config)
    classes = run.read_labels()
    dataset, source = choose_data(run, data, split)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise DatasetError(
            f"class(es) the model does not know: {', '.join(unknown)} (model classes: {', '.join(classes)})"
        )
    samples, _, skipped = usable_samples(dataset)
    index = {name: i for i, name in enumerate(classes)}
    paths = [str(s.path) for s in samples]
    y_true = np.array([index[s.label] for s in samples])
    model = keras.models.load_model(run.best_checkpoint, compile=False)
    scores = predict_files(model, config, paths)

    result = classification_metrics(y_true, scores, classes)
    result.update(data=source, skipped_files=len(skipped), classes=classes)
    result["reliability"] = plots.reliability_bins(y_true, scores)  # what reliability.png shows, with counts
    out = run.eval_dir
    out.mkdir(parents=True, exist_ok=True)
    targeted = target_precision is not None or target_recall is not None
    if len(classes) == 2 and (targeted or len(set(y_true.tolist())) == 2):
        choice = choose_threshold(y_true, scores[:, 1], target_precision, target_recall)
        result["threshold"] = {"positive_class": classes[1], **choice.to_dict()}
        write_json(out / "threshold.json", result["threshold"])
    elif targeted and len(classes) != 2:
        raise DatasetError("--target-precision/--target-recall apply to binary models only")
    if data is None and run.baseline.is_file():  # the same split the baseline guard scored
        result["baseline"] = read_json(run.baseline)
    write_json(out / "metrics.json", result)
    _write_predictions(out / "predictions.csv", paths, y_true, scores, classes)
    matrix = np.array(result["confusion_matrix"])
    plots.plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png", normalize=False)
    plots.plot_confusion_matrix(matrix, classes, out / "confusion_matrix_normalized.png", normalize=True)
    plots.plot_roc_pr(y_true, scores, classes, out)
    plots.plot_reliability(y_true, scores, out / "reliability.png")
    plots.plot_worst_mistakes(paths, y_true, scores, classes, out / "worst_mistakes.png")
    return result


def _write_predictions(
    path: Path, paths: list[str], y_true: np.ndarray, scores: np.ndarray, classes: list[str]
) -> None:
    frame = pd.DataFrame(scores, columns=[f"score_{c}" for c in classes])
    frame.insert(0, "predicted", [classes[i] for i in scores.argmax(axis=1)])
    frame.insert(0, "label", [classes[i] for i in y_true])
    frame.insert(0, "path", paths)
    frame.to_csv(path, index=False)
