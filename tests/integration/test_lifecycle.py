"""Train → evaluate → export → predict with real TensorFlow models on real files."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.config import TrainConfig
from imgclf.data.sources import load_dataset
from imgclf.errors import DatasetError, RunDirError
from imgclf.evaluation.evaluate import evaluate_run, predict_files
from imgclf.export.inference import ExportedModel, resolve_version_dir
from imgclf.modeling.training import train
from imgclf.registry.publish import export_run
from tests.conftest import tiny_config, write_csv

pytestmark = pytest.mark.slow


def _exported_scores(version_dir: Path, paths: list[str]) -> np.ndarray:
    loaded = tf.saved_model.load(str(version_dir))
    blobs = tf.constant([Path(p).read_bytes() for p in paths])
    return loaded.signatures["serving_default"](image_bytes=blobs)["scores"].numpy()


def test_run_directory_holds_everything(shapes_run):
    path = shapes_run.path
    for name in (
        "config.json",
        "labels.txt",
        "data_manifest.csv",
        "data_summary.json",
        "history.csv",
        "learning_curves.png",
        "weights/best.keras",
    ):
        assert (path / name).is_file(), name
    assert any((path / "tensorboard").rglob("events.out.tfevents*"))
    config = TrainConfig.load(path / "config.json")
    assert config.image_size == 32 and config.weights == "none"  # resolved, not left None
    assert shapes_run.read_labels() == ["circle", "square", "triangle"]
    summary = json.loads((path / "data_summary.json").read_text())
    assert summary["split_source"] == "seeded"
    assert sum(summary["counts"]["val"].values()) == 24  # 20% of 120, stratified
    assert len(summary["fingerprint"]) == 64


def test_evaluate_writes_metrics_and_plots(shapes_run):
    metrics = evaluate_run(shapes_run.path)
    out = shapes_run.eval_dir
    for name in (
        "metrics.json",
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "roc_curve.png",
        "pr_curve.png",
        "reliability.png",
        "predictions.csv",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "accuracy",
        "per_class",
        "macro_f1",
        "weighted_f1",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "expected_calibration_error",
    ):
        assert key in saved
    assert saved["num_examples"] == 24 and metrics["accuracy"] == saved["accuracy"]
    assert "threshold" not in saved  # multi-class: argmax


def test_exported_model_matches_in_process_scores(shapes_run, tmp_path):
    version_dir = export_run(shapes_run.path, tmp_path / "registry", name="shapes")
    assert version_dir == tmp_path / "registry" / "shapes" / "1"
    samples = load_dataset(shapes_run.manifest).subset("val").samples
    paths = [str(s.path) for s in samples]
    model = keras.models.load_model(shapes_run.best_checkpoint)
    in_process = predict_files(model, TrainConfig.load(shapes_run.config), paths)
    exported = _exported_scores(version_dir, paths)
    assert np.abs(in_process - exported).max() <= 1e-4

    # The export is self-describing and TF Serving-ready.
    assert (version_dir / "assets" / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["version"] == 1 and card["image_size"] == 32 and card["decision"]["rule"] == "argmax"
    assert card["data"]["fingerprint"] and card["versions"]["tensorflow"] == tf.__version__
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    pixels_signature = tf.saved_model.load(str(version_dir)).signatures["serving_pixels"]
    out = pixels_signature(pixels=tf.zeros([2, 32, 32, 3]))
    assert out["scores"].shape == (2, 3) and out["labels"].dtype == tf.string

    # A second export is version 2; nothing half-written is left behind.
    assert export_run(shapes_run.path, tmp_path / "registry", name="shapes").name == "2"
    names = sorted(p.name for p in (tmp_path / "registry" / "shapes").iterdir())
    assert names == [".registry.json.lock", "1", "2", "registry.json"]  # the state: 1 stable, 2 a candidate
    assert resolve_version_dir(tmp_path / "registry" / "shapes").name == "2"


def test_binary_threshold_is_chosen_saved_and_used_by_export(binary_run, tmp_path):
    metrics = evaluate_run(binary_run.path, target_recall=0.9)
    threshold = metrics["threshold"]
    assert threshold["positive_class"] == "square" and threshold["recall"] >= 0.9
    version_dir = export_run(binary_run.path, tmp_path / "registry")
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["decision"]["threshold"] == pytest.approx(threshold["threshold"])
    samples = load_dataset(binary_run.manifest).subset("val").samples
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant([s.path.read_bytes() for s in samples]))
    expected = (outputs["scores"].numpy()[:, 1] >= threshold["threshold"]).astype(np.int64)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), expected)
    predictions = ExportedModel.load(version_dir.parent).classify_files([samples[0].path, Path(__file__)])
    assert predictions[0].label in ("circle", "square") and predictions[1].error.startswith("not image")


def test_evaluate_other_data_and_unknown_classes(binary_run, binary_shapes_dir, tmp_path):
    metrics = evaluate_run(binary_run.path, data=str(binary_shapes_dir), split="train")
    assert metrics["num_examples"] == 80
    subset = write_csv(
        tmp_path / "only_circles.csv",
        [[str(p), "circle", ""] for p in sorted((binary_shapes_dir / "train" / "circle").iterdir())[:5]],
    )
    assert evaluate_run(binary_run.path, data=str(subset))["num_examples"] == 5
    unknown = write_csv(
        tmp_path / "unknown.csv", [[str(next((binary_shapes_dir / "train" / "circle").iterdir())), "hexagon", ""]]
    )
    with pytest.raises(DatasetError, match="hexagon"):
        evaluate_run(binary_run.path, data=str(unknown))


@pytest.mark.slow
def test_corrupt_files_are_skipped_and_counted(shapes_dir, tmp_path):
    data = tmp_path / "data"
    for label in ("circle", "square"):
        (data / label).mkdir(parents=True)
        for image in sorted((shapes_dir / label).iterdir())[:10]:
            (data / label / image.name).write_bytes(image.read_bytes())
    good = (data / "circle").iterdir().__next__().read_bytes()
    (data / "circle" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (data / "square" / "readme.txt").write_text("not an image")
    run = train(tiny_config(data, tmp_path / "run", epochs=1), report=lambda _: None)
    summary = json.loads(run.data_summary.read_text())
    assert sum(summary["skipped"].values()) == 2
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 20


def test_existing_run_is_not_overwritten(shapes_run, shapes_dir):
    with pytest.raises(RunDirError, match="--resume"):
        train(tiny_config(shapes_dir, shapes_run.path), report=lambda _: None)


@pytest.mark.slow
def test_mixed_precision_keeps_float32_outputs(binary_shapes_dir, tmp_path):
    run = train(tiny_config(binary_shapes_dir, tmp_path / "mp", epochs=1, mixed_precision=True), report=lambda _: None)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    model = keras.models.load_model(run.best_checkpoint)
    assert model.get_layer("scores").dtype_policy.name == "float32"
    assert model.get_layer("embedding").dtype_policy.name == "mixed_float16"
    assert model.output.dtype == "float32"


@pytest.mark.slow
def test_pretrained_backbone_parity_on_real_photos(cats_dogs_dir, mobilenet_v2_weights, tmp_path):
    """MobileNetV2 with the real ImageNet weights, fine-tuned briefly on real cats_dogs JPEGs."""
    rows = []
    for split, folder in (("train", "train"), ("val", "validation")):
        for label in ("cats", "dogs"):
            for path in sorted((cats_dogs_dir / folder / label).iterdir())[: 24 if split == "train" else 12]:
                rows.append([str(path), label, split])
    manifest = write_csv(tmp_path / "subset.csv", rows)
    config = tiny_config(
        manifest,
        tmp_path / "run",
        model="mobilenet_v2",
        alpha=0.35,
        image_size=96,
        weights=str(mobilenet_v2_weights),
        epochs=1,
        fine_tune_epochs=1,
        fine_tune_fraction=0.3,  # the default (1.0) fine-tunes everything; this checks the frozen bottom too
    )
    run = train(config, report=lambda _: None)
    progress = json.loads(run.progress.read_text())
    assert progress["head_done"] and progress["fine_tune_done"]
    assert len(run.history.read_text().splitlines()) == 3  # header + head epoch + fine-tune epoch
    paths = [r[0] for r in rows if r[2] == "val"]
    model = keras.models.load_model(run.best_checkpoint)
    in_process = predict_files(model, TrainConfig.load(run.config), paths)
    version_dir = export_run(run.path, tmp_path / "registry", name="cats_dogs")
    assert np.abs(in_process - _exported_scores(version_dir, paths)).max() <= 1e-4
    # The ImageNet weights were really loaded, and layers outside the fine-tuned top stayed frozen.
    reference = keras.applications.MobileNetV2(alpha=0.35, include_top=False, input_shape=(96, 96, 3), weights=None)
    reference.load_weights(str(mobilenet_v2_weights))
    trained_backbone = model.get_layer("backbone")
    for name in ("Conv1", "block_1_expand", "block_5_project"):
        np.testing.assert_array_equal(
            trained_backbone.get_layer(name).kernel.numpy(), reference.get_layer(name).kernel.numpy()
        )
    # ...and the top was fine-tuned.
    top = trained_backbone.get_layer("Conv_1").kernel.numpy()
    assert not np.array_equal(top, reference.get_layer("Conv_1").kernel.numpy())


def test_default_fine_tuning_unfreezes_the_whole_backbone_but_not_batchnorm(tmp_path):
    from imgclf.modeling.architectures import build_model, unfreeze_top_layers

    fraction = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run")).fine_tune_fraction
    model = build_model("mobilenet_v2", 2, 96, alpha=0.35, weights="none")
    backbone = model.get_layer("backbone")
    with_weights = [layer for layer in backbone.layers if layer.weights]
    batchnorm = [layer for layer in with_weights if isinstance(layer, keras.layers.BatchNormalization)]
    assert unfreeze_top_layers(model, fraction) == len(with_weights) - len(batchnorm) == 52
    assert all(layer.trainable for layer in with_weights if layer not in batchnorm)
    assert not any(layer.trainable for layer in batchnorm)
    assert unfreeze_top_layers(model, 0.3) < 52 and not backbone.get_layer("Conv1").trainable


@pytest.mark.slow
def test_label_smoothing_softens_the_training_targets(shapes_dir, binary_shapes_dir, tmp_path):
    """Multi-class smoothing trains on one-hot targets (1 - s + s/k); binary smoothing on the sigmoid."""
    from imgclf.modeling.training import _compile

    for num_classes, labels, outputs in (
        (2, np.array([[0.0], [1.0]]), np.array([[1e-7], [1 - 1e-7]])),  # one sigmoid unit, confidently right
        (3, np.eye(3), np.eye(3) * (1 - 2e-7) + 1e-7),  # softmax rows, confidently right
    ):
        model = keras.Sequential([keras.Input((outputs.shape[1],)), keras.layers.Activation("linear")])
        _compile(model, 1e-3, num_classes, label_smoothing=0.1)
        smoothed = model.evaluate(outputs, labels, verbose=0)[0]
        _compile(model, 1e-3, num_classes)
        plain = model.evaluate(outputs, labels if num_classes == 2 else labels.argmax(1), verbose=0)[0]
        assert plain < 1e-3 and smoothed > 0.15, (plain, smoothed)  # a perfectly confident answer is penalised

    for data, name in ((shapes_dir, "multi"), (binary_shapes_dir, "binary")):
        run = train(tiny_config(data, tmp_path / name, epochs=1, label_smoothing=0.1), report=lambda _: None)
        history = run.history.read_text().splitlines()
        assert "val_accuracy" in history[0] and len(history) == 2
        assert json.loads(run.config.read_text())["label_smoothing"] == 0.1
