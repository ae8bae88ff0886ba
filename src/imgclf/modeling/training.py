"""``imgclf train``: fit a classifier on a folder of images and save everything in a run directory.

Pretrained backbones train in two phases, as in Keras' transfer-learning guide: the head on a
frozen backbone, then the top ``fine_tune_fraction`` of the backbone's layers (default 1: all of
them) at a tenth of the learning rate, BatchNorm kept in inference mode. ``small_cnn`` and
``--weights none`` train everything in one phase. Each phase uses early stopping on validation
loss, reduces the learning rate on plateaus and keeps the best checkpoint; Keras'
``BackupAndRestore`` makes an interrupted phase resumable with ``--resume``.

Example:

>>> run_dir = train(TrainConfig(data="data/cats_dogs", out="runs/cd", model="mobilenet_v2",
...                             alpha=0.35, weights="mobilenet_v2_0.35_224_no_top.weights.h5"))
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from imgclf.config import TrainConfig
from imgclf.data.augmentation import build_augmenter
from imgclf.data.checks import load_flagged_files
from imgclf.data.pipeline import make_dataset
from imgclf.data.prepare import PreparedData, prepare_training_data
from imgclf.data.sources import Sample, load_dataset, write_manifest
from imgclf.errors import RunDirError
from imgclf.modeling.architectures import (
    backbone_spec,
    build_model,
    unfreeze_top_layers,
    validate_model_options,
)
from imgclf.modeling.baseline import guard
from imgclf.modeling.calibration import calibrate
from imgclf.modeling.defaults import IMBALANCE_LIMIT, choose_defaults
from imgclf.modeling.learning_curves import plot_learning_curves
from imgclf.modeling.strategy import choose_strategy, describe
from imgclf.preprocessing import PreprocessingSpec
from imgclf.run_dir import RunDir, read_json, write_json

Reporter = Callable[[str], None]


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill model-dependent defaults and reject invalid combinations before any work is done.

    Options that depend on the data (image size, epochs) stay ``None`` here: ``choose_defaults``
    picks them once the data is read.
    """
    spec = backbone_spec(config.model)
    updates: dict[str, object] = {}
    if config.alpha is None and spec.default_alpha is not None:
        updates["alpha"] = spec.default_alpha
    if config.model == "small_cnn":
        updates["weights"] = "none"
    resolved = config.model_copy(update=updates)
    size = resolved.image_size or spec.default_image_size
    validate_model_options(resolved.model, size, resolved.alpha, resolved.weights)
    if resolved.learning_rate is None:
        resolved.learning_rate = 1e-3
    if resolved.fine_tune_learning_rate is None:
        resolved.fine_tune_learning_rate = resolved.learning_rate / 10
    if resolved.weights.lower() not in ("imagenet", "none"):
        resolved.weights = str(Path(resolved.weights).expanduser().resolve())
    sources = [str(Path(source).expanduser().resolve()) for source in resolved.sources]
    resolved.data = sources[0] if len(sources) == 1 else sources
    for name in ("exclude", "init_from"):
        if getattr(resolved, name) is not None:
            setattr(resolved, name, str(Path(getattr(resolved, name)).expanduser().resolve()))
    return resolved


def preprocessing_spec(config: TrainConfig) -> PreprocessingSpec:
    assert config.image_size is not None
    return PreprocessingSpec(
        image_size=config.image_size,
        resize_mode=config.resize_mode,
        normalization=backbone_spec(config.model).normalization,
    )


def class_weights(prepared: PreparedData, mode: str) -> dict[int, float] | None:
    """``balanced`` weights (n / (k * n_class)); ``auto`` uses them when imbalance exceeds ``IMBALANCE_LIMIT``."""
    counts = Counter(s.label for s in prepared.split("train"))
    ratio = max(counts.values()) / min(counts.values())
    if mode == "none" or (mode == "auto" and ratio <= IMBALANCE_LIMIT):
        return None
    total, k = sum(counts.values()), len(prepared.classes)
    return {i: total / (k * counts[name]) for i, name in enumerate(prepared.classes)}


def _arrays(samples: list[Sample], index: dict[str, int]) -> tuple[list[str], np.ndarray]:
    return [str(s.path) for s in samples], np.array([index[s.label] for s in samples], np.int32)


def _compile(model: keras.Model, learning_rate: float, num_classes: int, label_smoothing: float = 0.0) -> None:
    """Binary: one sigmoid unit; multi-class: softmax with integer labels, or one-hot ones when smoothing."""
    if num_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy")
    elif label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=[accuracy])


def _one_hot_labels(dataset: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """Integer labels as one-hot rows (what CategoricalCrossentropy's label smoothing needs)."""
    return dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE)


class _ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, told how many batches an epoch has (the input pipeline's ``ignore_errors``
    hides it from Keras, which would show ``63/Unknown`` during the first epoch)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self._steps = steps

    def set_params(self, params: dict) -> None:
        super().set_params({**params, "steps": params.get("steps") or self._steps})


def _callbacks(run: RunDir, phase: str, patience: int, best_so_far: float | None, steps: int) -> list:
    run.best_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        _ProgressBar(steps),
        keras.callbacks.BackupAndRestore(str(run.backup(phase))),
        keras.callbacks.ModelCheckpoint(
            str(run.best_checkpoint),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=2, min_lr=1e-7),
        keras.callbacks.CSVLogger(str(run.history), append=True),
        keras.callbacks.TensorBoard(str(run.tensorboard)),
    ]


def _best_val_loss(callbacks: list) -> float | None:
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.ModelCheckpoint):
            best = callback.best
            return float(best) if np.isfinite(best) else None
    return None


def _start_run(config: TrainConfig, resume: bool, report: Reporter) -> tuple[TrainConfig, RunDir]:
    run = RunDir(Path(config.out).expanduser().resolve())
    if resume:
        if not run.config.is_file():
            raise RunDirError(f"nothing to resume: {run.path} has no config.json")
        # The saved config wins: a resumed run is the same run. Options given with --resume must agree with it.
        saved = TrainConfig.load(run.config)
        contradicting = contradictions(saved, config)
        if contradicting:
            hint = (
                "start it again without --resume (it never finished an epoch)"
                if not run.finished_an_epoch()
                else "or train into another --out"
            )
            raise RunDirError(
                f"--resume continues {run.path} with its saved config, which these options contradict: "
                f"{'; '.join(contradicting)}; drop them, or {hint}"
            )
        return saved, run
    if run.config.is_file():
        if run.finished_an_epoch():
            raise RunDirError(
                f"{run.path} already holds a training run; pass --resume to continue it, or choose another --out"
            )
        report(f"Starting {run.path} again: its earlier start never finished an epoch")
        run.clear()
    return resolve_config(config), run


def contradictions(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """Options explicitly set in ``given`` whose value differs from the (resolved) ``saved`` config."""
    resolved = resolve_config(given)
    found = []
    for name in sorted(given.model_fields_set - {"out"}):
        if name == "augmentation":
            for field in sorted(given.augmentation.model_fields_set):
                mine, theirs = getattr(resolved.augmentation, field), getattr(saved.augmentation, field)
                if mine != theirs:
                    found.append(f"augmentation.{field} {mine!r} (saved {theirs!r})")
            continue
        mine, theirs = getattr(resolved, name), getattr(saved, name)
        if name == "data":
            mine, theirs = resolved.sources, saved.sources
        if mine != theirs:
            found.append(f"{name} {mine!r} (saved {theirs!r})")
    return found


def _prepared_from_run(run: RunDir, classes: list[str]) -> PreparedData:
    """Reload the exact files and split a run was started with."""
    dataset = load_dataset(run.manifest)
    summary = read_json(run.data_summary)
    return PreparedData(
        classes=classes,
        samples=dataset.samples,
        skipped=summary.get("skipped", {}),
        skipped_files=summary.get("skipped_files", []),
        split_source=summary.get("split_source", "dataset"),
        fingerprint=summary.get("fingerprint", ""),
        sources=summary.get("sources", []),
        merged=summary.get("merged", {}),
        excluded=summary.get("excluded", 0),
        held_out_test=summary.get("held_out_test", 0),
        duplicates=summary.get("duplicates", {}),
        image_stats=summary.get("image_stats", {}),
    )


def train(
    config: TrainConfig,
    resume: bool = False,
    report: Reporter = print,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    baseline: bool = True,
) -> RunDir:
    """Train per ``config``; return the run directory. ``resume`` continues an interrupted run.

    ``callbacks`` are added to both phases (``imgclf tune`` reports each epoch to its pruner);
    ``baseline=False`` skips the baseline guard (tune's trials).
    """
    config, run = _start_run(config, resume, report)
    progress = run.read_progress() if resume else {}
    run.path.mkdir(parents=True, exist_ok=True)

    if resume:
        prepared = _prepared_from_run(run, run.read_labels())
    else:
        report(f"Inspecting {', '.join(config.sources)} ...")
        exclude = load_flagged_files(config.exclude) if config.exclude else ()
        datasets = [load_dataset(source) for source in config.sources]
        prepared = prepare_training_data(datasets, config.val_fraction, config.seed, exclude)
        config, _ = choose_defaults(config, prepared)
        config.save(run.config)
        run.labels.write_text("\n".join(prepared.classes) + "\n", encoding="utf-8")
        write_manifest(prepared.samples, run.manifest, absolute=True)
        write_json(run.data_summary, prepared.summary())
    for line in describe_data(prepared):
        report(line)
    for option, why in config.chosen.items():
        report(f"  {option.replace('_', ' ')}: {why}")

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _fit(config, run, prepared, progress, report, list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    shutil.rmtree(run.path / "backup", ignore_errors=True)  # only empty folders remain after success
    if config.pretrained and baseline:
        _guard(config, run, prepared, report)
    if config.calibrate:
        calibrate(run, prepared, preprocessing_spec(config), config.seed, report)
    plot_learning_curves(run.history, run.learning_curves, run.read_progress().get("fine_tune_started_epoch"))
    report(f"Run saved to {run.path}")
    return run


def _guard(config: TrainConfig, run: RunDir, prepared: PreparedData, report: Reporter) -> None:
    balanced = class_weights(prepared, config.class_weights) is not None
    guard(config, run, prepared, preprocessing_spec(config), balanced, report)


def adopt_run(source: RunDir, out: Path, report: Reporter = print) -> RunDir:
    """Copy a finished run to ``out`` as a run of its own, with its baseline guard (``imgclf tune``'s
    final model is its best trial's run: the model that was measured, not a second training)."""
    source.require_trained()
    run = RunDir(out.expanduser().resolve())
    if run.path.exists():
        raise RunDirError(f"{run.path} already exists")
    shutil.copytree(source.path, run.path)
    config = TrainConfig.load(run.config).model_copy(update={"out": str(run.path)})
    config.save(run.config)
    if config.pretrained:
        _guard(config, run, _prepared_from_run(run, run.read_labels()), report)
    report(f"Run saved to {run.path}")
    return run


def describe_data(prepared: PreparedData) -> list[str]:
    """What a run trains on, in a few lines: counts, the split, and what was merged, skipped or left out."""
    train_samples, val_samples = prepared.split("train"), prepared.split("val")
    lines = [
        f"{len(prepared.classes)} classes, {len(train_samples)} training and {len(val_samples)} "
        f"validation images ({prepared.split_source} split); {sum(prepared.skipped.values())} file(s) skipped"
    ]
    notes = []
    if prepared.merged.get("replaced"):
        notes.append(
            f"{prepared.merged['replaced']} image(s) also listed by a later source "
            f"({prepared.merged.get('relabelled', 0)} relabelled by it)"
        )
    if prepared.excluded:
        notes.append(f"{prepared.excluded} file(s) excluded")
    if prepared.held_out_test:
        notes.append(f"{prepared.held_out_test} test image(s) held out")
    if notes:
        lines.append("; ".join(notes))
    if prepared.duplicates:
        lines.append(
            f"training with {prepared.duplicates.get('groups', 0)} group(s) of duplicate images, "
            f"{prepared.duplicates.get('leaked_groups', 0)} of them across train and validation (leaked)"
            + (" — see `imgclf data check`" if prepared.duplicates.get("leaked_groups") else "")
        )
    return lines


def _fit(
    config: TrainConfig, run: RunDir, prepared: PreparedData, progress: dict, report: Reporter, extra: list
) -> None:
    spec = preprocessing_spec(config)
    strategy = choose_strategy()
    report(f"Training {config.model} at {spec.image_size}px on {describe(strategy)}")
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    index = prepared.class_index()
    train_paths, train_labels = _arrays(prepared.split("train"), index)
    val_paths, val_labels = _arrays(prepared.split("val"), index)
    augmenter = build_augmenter(config.augmentation, config.seed)
    train_ds = make_dataset(train_paths, train_labels, spec, batch_size, True, augmenter, config.cache, config.seed)
    val_ds = make_dataset(val_paths, val_labels, spec, batch_size, False, None, config.cache)
    weights = class_weights(prepared, config.class_weights)
    num_classes = len(prepared.classes)
    if config.label_smoothing and num_classes > 2:
        train_ds, val_ds = _one_hot_labels(train_ds, num_classes), _one_hot_labels(val_ds, num_classes)
    verbose = 1 if sys.stdout.isatty() else 2
    steps = -(-len(train_paths) // batch_size)

    with strategy.scope():
        model = build_model(config.model, num_classes, spec.image_size, config.alpha, config.weights, config.dropout)
        _compile(model, config.learning_rate or 1e-3, num_classes, config.label_smoothing)

    head_epochs = config.epochs or 1
    if config.init_from and not progress.get("head_done"):
        model.load_weights(config.init_from)  # warm start (imgclf retrain: the stable version's weights)
        report(f"Starting from the weights of {config.init_from}")
    if not progress.get("head_done"):
        callbacks = _callbacks(run, "head", config.early_stopping_patience, None, steps) + extra
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=head_epochs,
            class_weight=weights,
            callbacks=callbacks,
            verbose=verbose,
        )
        progress.update(
            head_done=True,
            head_epochs_run=history.epoch[-1] + 1 if history.epoch else head_epochs,
            best_val_loss=_best_val_loss(callbacks),
        )
        run.write_progress(progress)
    elif config.pretrained and (config.fine_tune_epochs or 0) > 0:
        model.load_weights(str(run.best_checkpoint))

    fine_tune_epochs = config.fine_tune_epochs or 0
    if not config.pretrained or fine_tune_epochs == 0 or progress.get("fine_tune_done"):
        return
    with strategy.scope():
        unfrozen = unfreeze_top_layers(model, config.fine_tune_fraction)
        _compile(model, config.fine_tune_learning_rate or 1e-4, num_classes, config.label_smoothing)
    part = (
        "the whole backbone"
        if config.fine_tune_fraction >= 1
        else f"the top {config.fine_tune_fraction:.0%} of the backbone"
    )
    report(
        f"Fine-tuning {part} ({unfrozen} layers with weights; BatchNorm stays frozen) "
        f"at lr={config.fine_tune_learning_rate}"
    )
    start = int(progress.get("head_epochs_run", head_epochs))
    callbacks = _callbacks(run, "fine_tune", config.early_stopping_patience, progress.get("best_val_loss"), steps)
    callbacks += extra
    progress["fine_tune_started_epoch"] = start
    model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=start,
        epochs=start + fine_tune_epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=verbose,
    )
    progress["fine_tune_done"] = True
    best = _best_val_loss(callbacks)  # the checkpoint's loss: the head phase's, unless fine-tuning beat it
    if best is not None:
        progress["best_val_loss"] = best
    run.write_progress(progress)
