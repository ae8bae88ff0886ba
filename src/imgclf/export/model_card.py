"""The model card stored with every export (``assets.extra/model_card.json``).

What a person or a later tool needs to trust and use a version: classes, preprocessing,
threshold, metrics and the data they were measured on, the training data fingerprint, and the
library versions it was built with.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

import keras
import tensorflow as tf

from imgclf.config import TrainConfig
from imgclf.contract import (
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD_NAME,
    CLASSIFY_OUTPUT_CLASSES,
    CLASSIFY_OUTPUT_SCORES,
    CLASSIFY_SIGNATURE,
    EXAMPLE_IMAGE_FEATURE,
    FEATURES_SIGNATURE,
    INPUT_BYTES,
    INPUT_PIXELS,
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_LABELS,
    OUTPUT_SCORES,
    PIXELS_SIGNATURE,
    PROJECTION_DIM,
    SERVING_SIGNATURE,
    TTA_NONE,
)
from imgclf.export.tta import describe as describe_tta
from imgclf.preprocessing import PreprocessingSpec
from imgclf.run_dir import RunDir, read_json

_HEADLINE_METRICS = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "expected_calibration_error",
    "num_examples",
    "data",
)


def build_model_card(
    run: RunDir,
    config: TrainConfig,
    classes: list[str],
    spec: PreprocessingSpec,
    threshold: float | None,
    threshold_source: str,
    name: str,
    tta: str = TTA_NONE,
) -> dict[str, Any]:
    summary = read_json(run.data_summary) if run.data_summary.is_file() else {}
    metrics_path = run.eval_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return {
        "name": name,
        "version": None,  # set when the version number is allocated
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_dir": str(run.path),
        "model": {
            "architecture": config.model,
            "alpha": config.alpha,
            "weights": config.weights,
            "epochs": config.epochs,
            "fine_tune_epochs": config.fine_tune_epochs,
            "mixed_precision": config.mixed_precision,
        },
        "classes": classes,
        "image_size": spec.image_size,
        "preprocessing": {
            **spec.to_dict(),
            "decode": "tf.io.decode_image, channels=3, first frame of animations, EXIF orientation ignored",
            "resize": "bilinear, no antialiasing, output float32 in [0, 255]",
        },
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {INPUT_BYTES: "string [N]"},
                "outputs": {
                    OUTPUT_SCORES: "float32 [N, classes]",
                    OUTPUT_CLASS_IDS: "int64 [N]",
                    OUTPUT_LABELS: "string [N]",
                    OUTPUT_EMBEDDING_PROJECTION: f"float32 [N, {PROJECTION_DIM}]",
                    OUTPUT_INPUT_STATISTICS: (
                        "float32 [N, 12] (monitoring; columns in imgclf.monitoring.input_stats order)"
                    ),
                },
            },
            FEATURES_SIGNATURE: {
                "inputs": {INPUT_BYTES: "string [N]"},
                "outputs": f"{SERVING_SIGNATURE}'s, plus {OUTPUT_EMBEDDING}: float32 [N, D] (pooled features)",
            },
            CLASSIFY_SIGNATURE: {
                "method_name": CLASSIFY_METHOD_NAME,
                "inputs": {
                    CLASSIFY_INPUTS: f"string [N]: serialized tf.Example, the image under {EXAMPLE_IMAGE_FEATURE!r}"
                },
                "outputs": {
                    CLASSIFY_OUTPUT_CLASSES: "string [N, classes]",
                    CLASSIFY_OUTPUT_SCORES: "float32 [N, classes]",
                },
            },
            PIXELS_SIGNATURE: {
                "inputs": {INPUT_PIXELS: f"float32 [N, {spec.image_size}, {spec.image_size}, 3] in [0, 255]"}
            },
        },
        "tta": describe_tta(tta),
        "decision": {
            "rule": "threshold on positive class" if threshold is not None else "argmax",
            "threshold": threshold,
            "positive_class": classes[1] if threshold is not None else None,
            "source": threshold_source,
        },
        "metrics": {k: metrics[k] for k in _HEADLINE_METRICS if k in metrics},
        "data": {
            "source": config.data,
            "fingerprint": summary.get("fingerprint"),
            "counts": summary.get("counts"),
            "split_source": summary.get("split_source"),
        },
        "lineage": read_json(run.lineage) if run.lineage.is_file() else None,
        "versions": {
            "imgclf": package_version("imgclf"),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
    }
