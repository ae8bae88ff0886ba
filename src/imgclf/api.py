"""The Python API: what the ``imgclf`` command does, for notebooks and scripts.

The command line is a thin layer over these functions, so both behave alike and raise the same
errors (``imgclf.errors``; the CLI prints their message on one line).

Example:
    >>> import imgclf
    >>> run = imgclf.train("data/cats_dogs", out="runs/cats_dogs", model="small_cnn", epochs=3)
    >>> imgclf.evaluate(run)["accuracy"]
    0.91
    >>> version = imgclf.export(run, registry="registry", name="cats_dogs")
    >>> model = imgclf.load(version)              # a version, or a model directory (its serving version)
    >>> [p.label for p in model.predict(["cat.jpg", open("dog.png", "rb").read()])]
    ['cats', 'dogs']
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.errors import ConfigError, DatasetError, ExportError, ImageDecodeError
from imgclf.run_dir import RunDir

RunLike = str | Path | RunDir


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the label the export decided, its score, and every class's score."""

    source: str  # the path, or "image N" for bytes and PIL images
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)


def train(
    data: str | Path | list[str | Path],
    *,
    out: str | Path,
    resume: bool = False,
    report: Callable[[str], object] | None = print,
    config: Any = None,
    **options: Any,
) -> RunDir:
    """Train a classifier into the run directory ``out``; return it.

    ``options`` are ``imgclf.config.TrainConfig`` fields (``model``, ``image_size``, ``epochs``,
    ``weights``, ``augmentation={"enabled": False}``...); ``config`` passes a whole ``TrainConfig``
    instead. Invalid options raise ``ConfigError`` naming the first one.
    """
    if config is None:
        config = _train_config(data, out, options)
    _check_sources(config)
    from imgclf.modeling.training import train as train_run  # TensorFlow: only once the arguments are known good

    return train_run(config, resume=resume, report=report or (lambda _line: None))


def tune(
    data: str | Path | list[str | Path],
    *,
    out: str | Path,
    budget_s: float = 1800,
    max_trials: int | None = None,
    resume: bool = False,
    final: bool = True,
    report: Callable[[str], object] | None = print,
    **options: Any,
) -> Any:
    """Search the training recipe for ``data`` within ``budget_s`` seconds, then train the best one.

    ``options`` are ``TrainConfig`` fields, as for ``train``; those given are fixed, the recipe's
    others are searched (``imgclf.tuning``). Returns a ``TuneResult`` (best recipe, its config file,
    the final run).

    Example:

    >>> result = imgclf.tune("data/flowers", out="tune/flowers", budget_s=1800, model="mobilenet_v2",
    ...                      alpha=0.35, weights="mobilenet_v2_0.35_224_no_top.weights.h5")
    """
    config = _train_config(data, out, options)
    _check_sources(config)
    from imgclf.tuning.search import tune as run_search  # TensorFlow and Optuna: once the arguments are good

    return run_search(config, budget_s, max_trials, resume, final, report or (lambda _line: None))


def _train_config(data: str | Path | list[str | Path], out: str | Path, options: dict[str, Any]) -> Any:
    """A ``TrainConfig`` from ``options``; ``ConfigError`` naming the first invalid one."""
    from pydantic import ValidationError

    from imgclf.config import TrainConfig

    sources = [str(d) for d in data] if isinstance(data, list | tuple) else str(data)
    try:
        return TrainConfig(data=sources, out=str(out), **options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"invalid {where}: {error['msg']} (got {error.get('input')!r})") from None


def _check_sources(config: Any) -> None:
    """Paths a run reads must exist: one line naming the first that does not."""
    _check_paths(config.sources, "dataset path")
    if config.exclude is not None:
        _check_paths([config.exclude], "--exclude report")
    if config.weights.lower() not in ("imagenet", "none") and not Path(config.weights).expanduser().is_file():
        raise ConfigError(f"weights file not found: {config.weights}")


def evaluate(
    run: RunLike,
    data: str | Path | None = None,
    split: str | None = None,
    target_precision: float | None = None,
    target_recall: float | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run (its validation split, or ``data``); writes ``RUN/eval/``; returns the metrics."""
    RunDir(_run_path(run)).require_trained()
    if data is not None:
        _check_paths([str(data)], "dataset path")
    from imgclf.evaluation.evaluate import evaluate_run

    return evaluate_run(_run_path(run), None if data is None else str(data), split, target_precision, target_recall)


def export(
    run: RunLike,
    *,
    registry: str | Path,
    name: str | None = None,
    reference_data: str | None = None,
    tta: str = "none",
    tflite: list[str] | tuple[str, ...] | str = (),
    representative_images: int = 200,
) -> Path:
    """Export a trained run as the next version of ``name`` in ``registry``; return the version directory.

    The first version of a model becomes its stable version; later ones are candidates until promoted.
    ``tta="flip"`` (or ``"flip+crops"``) makes every signature answer the mean class scores over
    augmented views of each image (``imgclf.export.tta``): 2 (or 12) model runs per image.
    ``tflite=["int8", "float16"]`` (or ``"int8,float16"``) adds LiteRT variants beside the SavedModel
    (``imgclf.export.litert``; the first is ``model.tflite``); ``representative_images`` training images
    calibrate int8. A variant that fails to convert raises ``ExportError`` after the version is published.
    """
    from imgclf.contract import check_tflite_variants, check_tta

    check_tta(tta)
    variants = check_tflite_variants([tflite] if isinstance(tflite, str) else list(tflite))
    if representative_images < 1:
        raise ConfigError(f"representative_images must be at least 1, got {representative_images}")
    RunDir(_run_path(run)).require_trained()
    from imgclf.registry.publish import export_run

    return export_run(_run_path(run), registry, name, reference_data, tta, variants, representative_images)


def load(path: str | Path, tflite: str | None = None) -> Model:
    """An exported model: a version directory, or a model directory in a registry (the version it
    serves; without registry state, its newest whole version). ``tflite="int8"`` (or another variant
    the export holds) runs that LiteRT variant instead of the SavedModel, with the same answers'
    shape (``imgclf.export.inference.LiteRTExportedModel``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ExportError(f"no exported model at {path}")
    from imgclf.contract import check_tflite_variants
    from imgclf.export.inference import ExportedModel, LiteRTExportedModel
    from imgclf.registry.store import STATE_FILE, Registry

    if tflite is not None:
        tflite = check_tflite_variants([tflite])[0]
    if (path / STATE_FILE).is_file():
        path = path / str(Registry(path.parent).serving_version(path.name))
    if tflite is not None:
        return Model(LiteRTExportedModel.load_variant(path, tflite))
    return Model(ExportedModel.load(path))


def evaluate_tflite(
    run: RunLike,
    variants: list[str] | str,
    data: str | Path | None = None,
    split: str | None = None,
    representative_images: int = 200,
) -> dict[str, Any]:
    """The run's float model and its LiteRT variants side by side on its validation split (or ``data``):
    accuracy, top-1 agreement with float, ECE, size, latency p50 at batch 1 and 32. Writes
    ``RUN/eval/litert.json``; returns ``{"data", "num_examples", "rows": [...], "failed": {...}}``."""
    from imgclf.contract import check_tflite_variants

    chosen = check_tflite_variants([variants] if isinstance(variants, str) else list(variants))
    RunDir(_run_path(run)).require_trained()
    if data is not None:
        _check_paths([str(data)], "dataset path")
    from imgclf.export.litert import evaluate_run_variants

    return evaluate_run_variants(
        _run_path(run), chosen, None if data is None else str(data), split, representative_images
    )


class Model:
    """A loaded export. ``predict`` takes image paths, encoded bytes or PIL images."""

    def __init__(self, exported: Any) -> None:
        self._exported = exported
        self.path: Path = exported.path
        self.classes: list[str] = list(exported.labels)
        self.card: dict[str, Any] = dict(exported.card)

    def predict(self, images: Iterable[str | Path | bytes | Any], batch_size: int = 32) -> list[Prediction]:
        """One ``Prediction`` per image, in order. An image that cannot be read or decoded raises
        ``ImageDecodeError`` naming it (the message ``imgclf predict`` prints for that file)."""
        named: list[tuple[str, bytes]] = []
        for index, image in enumerate(images, start=1):
            if isinstance(image, str | Path):
                try:
                    named.append((str(image), Path(image).read_bytes()))
                except OSError as exc:
                    raise ImageDecodeError(f"{image}: cannot read: {exc.strerror or exc}") from None
            elif isinstance(image, bytes | bytearray | memoryview):
                named.append((f"image {index}", bytes(image)))
            elif hasattr(image, "save"):  # a PIL image: encoded losslessly for the export's own decoder
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
                named.append((f"image {index}", buffer.getvalue()))
            else:
                raise ConfigError(f"image {index}: expected a path, bytes or a PIL image, got {type(image).__name__}")
        results = self._exported.classify_bytes(named, batch_size)
        for result in results:
            if result.error:
                raise ImageDecodeError(f"{result.path}: {result.error}")
        return [Prediction(r.path, r.label, r.confidence, r.scores) for r in results]

    def classify_files(self, paths: Iterable[str | Path]) -> list[Any]:
        """Per-file results that carry an ``error`` instead of raising (what ``imgclf predict`` prints)."""
        return self._exported.classify_files(list(paths))

    def compare_tflite(self, paths: Iterable[str | Path], variants: list[str] | str) -> list[dict[str, Any]]:
        """This export's SavedModel and its LiteRT ``variants`` side by side on image files (those that
        decode): top-1 agreement with float, size, latency p50 at batch 1 and 32, and accuracy and ECE
        when every file sits in a folder named after one of the classes."""
        import numpy as np

        from imgclf.contract import check_tflite_variants
        from imgclf.data.inspection import inspect_bytes
        from imgclf.export.litert import compare_export_variants

        chosen = check_tflite_variants([variants] if isinstance(variants, str) else list(variants))
        usable = []
        for path in map(Path, paths):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if inspect_bytes(path, data).usable:
                usable.append((path, data))
        if not usable:
            raise ImageDecodeError("no decodable image to compare the models on")
        labelled = all(path.parent.name in self.classes for path, _ in usable)
        y_true = np.array([self.classes.index(p.parent.name) for p, _ in usable]) if labelled else None
        return compare_export_variants(self.path, chosen, [data for _, data in usable], y_true)


def predict_batch(
    source: str | Path,
    *,
    model: str | Path,
    out: str | Path,
    format: str = "parquet",
    batch_size: int = 32,
    concurrency: int | None = None,
    address: str | None = None,
    resume: bool = False,
    rows_per_file: int = 10_000,
    progress: Callable[[int, int], object] | None = None,
    verbose: bool = False,
) -> Any:
    """Classify every image of ``source`` on Ray Data into the directory ``out``; return a ``BatchResult``.

    ``source``: a folder (recursive), a glob, a CSV manifest (``path[,label]``) or a URI (``s3://…``).
    ``model``: ``REGISTRY/NAME`` (its serving version), ``REGISTRY/NAME/VERSION`` or ``REGISTRY/NAME@LABEL``.
    One row per input (path, sha256, label, confidence, ``score_<class>``, model, model_version,
    error) in ``format`` (parquet, jsonl, csv) part files; ``resume=True`` finishes an interrupted
    job. Embedded local Ray unless ``address`` (or ``RAY_ADDRESS``) names a cluster (``imgclf.batch``).

    Example:

    >>> result = imgclf.predict_batch("photos/", model="registry/cats_dogs", out="scores/")
    >>> result.images, result.errors, result.summary.get("accuracy")
    (3000, 2, None)
    """
    from imgclf.batch import predict_batch as run_batch

    return run_batch(
        source, model, out, fmt=format, batch_size=batch_size, concurrency=concurrency, address=address,
        resume=resume, rows_per_file=rows_per_file, progress=progress, verbose=verbose,
    )  # fmt: skip


def _check_paths(paths: Iterable[str], what: str) -> None:
    for path in paths:
        if not Path(path).expanduser().exists():
            raise DatasetError(f"{what} does not exist: {path}")


def _run_path(run: RunLike) -> Path:
    return run.path if isinstance(run, RunDir) else Path(run)
