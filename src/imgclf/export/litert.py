"""LiteRT (TFLite) variants of an export: ``imgclf export --tflite int8|float16|dynamic|float32``.

What is converted is the network after preprocessing: ``normalized_pixels`` (float32 [N, size,
size, 3], decoded, resized and normalized by ``imgclf.preprocessing``) → ``scores`` (float32
[N, classes], probabilities). LiteRT has no builtin image-decode op, so decoding stays outside the
``.tflite``; every runtime calls ``imgclf.preprocessing`` for it: the training pipeline and
``imgclf evaluate --tflite`` directly, and the model server, ``imgclf predict --tflite`` and
``imgclf.load(..., tflite=...)`` through ``assets.extra/litert_io`` (a small SavedModel built here
from the same functions; names in ``imgclf.contract``).

Variants (``TFLiteConverter.from_saved_model``):

* ``int8``: full-integer post-training quantization (``TFLITE_BUILTINS_INT8``, int8 input and
  output) calibrated on a representative set drawn, seeded, from the run's training split (200
  images by default); the input and output scale and zero point go into the model card;
* ``float16``: float16 weights (computed in float32 on CPUs);
* ``dynamic``: int8 weights, float activations (dynamic-range quantization);
* ``float32``: no quantization (the reference the others are compared with on LiteRT).

The TF 2.20/2.21 converter leaks memory on every ``convert()`` (tensorflow#122598), so conversion
runs in a child process (``python -m imgclf.export.litert REQUEST.json``); a variant that fails
is reported with its reason and the SavedModel is written regardless (``imgclf export`` then says
which variant failed and exits non-zero). Each converted variant is measured against the float
model on the run's validation split: accuracy, top-1 agreement with float, ECE, size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.contract import (
    CLASSIFY_INPUTS,
    EXAMPLE_IMAGE_FEATURE,
    INPUT_BYTES,
    INPUT_PIXELS,
    LITERT_DECIDE_SIGNATURE,
    LITERT_DECODE_SIGNATURE,
    LITERT_EXAMPLES_SIGNATURE,
    LITERT_INPUT,
    LITERT_IO_DIR,
    LITERT_SERVED_SIGNATURES,
    LITERT_SIGNATURE,
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_LABELS,
    OUTPUT_SCORES,
    TFLITE_FILE,
    check_tflite_variants,
    tflite_file_name,
)
from imgclf.errors import DatasetError, ExportError
from imgclf.preprocessing import PreprocessingSpec

DEFAULT_REPRESENTATIVE_IMAGES = 200
REPRESENTATIVE_SEED = 0
CONVERSION_TIMEOUT_S = 1800
LATENCY_RUNS = {1: 30, 32: 5}  # batch size → timed runs (after one untimed run)


# ------------------------------------------------------------------ what the parent writes


def write_litert_io(out: Path, spec: PreprocessingSpec, classes: list[str], threshold: float | None) -> Path:
    """The small SavedModel around the ``.tflite``: decode (bytes or tf.Examples) and decide (scores → labels)."""
    import tensorflow as tf

    from imgclf.export.decision import decision
    from imgclf.export.input_statistics import input_statistics
    from imgclf.preprocessing import decode_and_resize_batch, normalize

    labels = tf.constant(classes)

    class LiteRTIO(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_BYTES)])
        def decode(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            pixels, sizes = decode_and_resize_batch(image_bytes, spec)
            return {
                LITERT_INPUT: normalize(pixels, spec.normalization),
                INPUT_PIXELS: pixels,
                OUTPUT_INPUT_STATISTICS: input_statistics(pixels, sizes),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUTS)])
        def decode_examples(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            features = tf.io.parse_example(inputs, {EXAMPLE_IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
            pixels, _ = decode_and_resize_batch(features[EXAMPLE_IMAGE_FEATURE], spec)
            return {LITERT_INPUT: normalize(pixels, spec.normalization)}

        @tf.function(input_signature=[tf.TensorSpec([None, len(classes)], tf.float32, name=OUTPUT_SCORES)])
        def decide(self, scores: tf.Tensor) -> dict[str, tf.Tensor]:
            class_ids = decision(scores, threshold)
            return {OUTPUT_CLASS_IDS: class_ids, OUTPUT_LABELS: tf.gather(labels, class_ids)}

    module = LiteRTIO()
    target = out / LITERT_IO_DIR
    tf.saved_model.save(
        module,
        str(target),
        signatures={
            LITERT_DECODE_SIGNATURE: module.decode,
            LITERT_EXAMPLES_SIGNATURE: module.decode_examples,
            LITERT_DECIDE_SIGNATURE: module.decide,
        },
    )
    return target


def representative_paths(manifest: Path, count: int, seed: int = REPRESENTATIVE_SEED) -> list[str]:
    """``count`` files of the run's training split, drawn with ``seed`` (all of them if fewer)."""
    from imgclf.data.sources import load_dataset

    samples = load_dataset(manifest).subset("train").samples
    chosen = np.random.default_rng(seed).permutation(len(samples))[: max(0, count)]
    return [str(samples[i].path) for i in sorted(chosen)]


def convert_in_child(
    checkpoint: Path,
    spec: PreprocessingSpec,
    targets: dict[str, Path],
    representative: list[str],
    timeout_s: float = CONVERSION_TIMEOUT_S,
) -> dict[str, str | None]:
    """Convert the checkpoint's network to each variant's file in a child process.

    Returns variant → None (written) or the reason it failed; a child that dies fails them all.
    """
    with tempfile.TemporaryDirectory(prefix="imgclf-tflite-") as scratch:
        request = Path(scratch) / "request.json"
        result = Path(scratch) / "result.json"
        request.write_text(
            json.dumps(
                {
                    "checkpoint": str(checkpoint),
                    "spec": spec.to_dict(),
                    "targets": {variant: str(path) for variant, path in targets.items()},
                    "representative": representative,
                    "result": str(result),
                }
            ),
            encoding="utf-8",
        )
        try:
            child = subprocess.run(
                [sys.executable, "-m", "imgclf.export.litert", str(request)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return dict.fromkeys(targets, f"the conversion took longer than {timeout_s:.0f} s")
        if result.is_file():
            return json.loads(result.read_text(encoding="utf-8"))
        lines = [line for line in (child.stderr or "").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {child.returncode}"
        return dict.fromkeys(targets, f"the converter process failed ({reason})")


# ------------------------------------------------------------------ the child


def _network_savedmodel(model: Any, target: Path, image_size: int) -> None:
    """``normalized_pixels`` → ``scores`` (class probabilities) as a SavedModel the converter reads."""
    import keras
    import tensorflow as tf

    from imgclf.modeling.architectures import class_scores

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        LITERT_SIGNATURE,
        lambda pixels: {OUTPUT_SCORES: class_scores(model(pixels, training=False))},
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=LITERT_INPUT)],
    )
    archive.write_out(str(target), verbose=False)


def _representative_dataset(paths: list[str], spec: PreprocessingSpec) -> list[np.ndarray]:
    import tensorflow as tf

    from imgclf.preprocessing import decode_and_resize, normalize

    samples = []
    for path in paths:
        try:
            pixels = decode_and_resize(tf.io.read_file(path), spec)
        except (tf.errors.OpError, ValueError):
            continue  # unreadable or undecodable: the others calibrate
        samples.append(normalize(pixels[None], spec.normalization).numpy())
    return samples


def _convert(saved_model: Path, variant: str, samples: list[np.ndarray]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[LITERT_SIGNATURE])
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if not samples:
            raise ExportError("int8 needs representative images and none of the training split's could be read")
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def child_main(request_path: str) -> int:
    """The child process: convert every requested variant; write variant → error (or None) as JSON."""
    import keras

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    spec = PreprocessingSpec.from_dict(request["spec"])
    outcome: dict[str, str | None] = {}
    model = keras.models.load_model(request["checkpoint"], compile=False)
    samples = _representative_dataset(request["representative"], spec) if "int8" in request["targets"] else []
    with tempfile.TemporaryDirectory(prefix="imgclf-network-") as scratch:
        network = Path(scratch) / "network"
        _network_savedmodel(model, network, spec.image_size)
        for variant, target in request["targets"].items():
            try:
                Path(target).write_bytes(_convert(network, variant, samples))
                outcome[variant] = None
            except Exception as error:  # the converter raises many types; the reason is what matters
                lines = [line for line in str(error).strip().splitlines() if line.strip()]
                outcome[variant] = f"{type(error).__name__}: {lines[0] if lines else 'no message'}"
    Path(request["result"]).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


# ------------------------------------------------------------------ side by side


@dataclass
class Runtime:
    """One way of computing class scores for the comparison: the float TensorFlow model or a variant."""

    name: str
    scores: Any  # Callable[[np.ndarray], np.ndarray]: its input (pixels or normalized) → float32 [N, classes]
    size_bytes: int | None
    normalized: bool  # True: takes normalized_pixels; False: pixels in [0, 255]


def compare(
    runtimes: list[Runtime],
    pixels: np.ndarray,
    normalized: np.ndarray,
    y_true: np.ndarray | None,
    latency: bool = True,
    latency_runs: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """One row per runtime (the first is the float reference): accuracy, top-1 agreement with the
    first, ECE, size and (``latency``) the median latency at batch 1 and 32 of the model alone."""
    from imgclf.evaluation.metrics import expected_calibration_error

    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for runtime in runtimes:
        inputs = normalized if runtime.normalized else pixels
        scores = _in_batches(runtime.scores, inputs)
        predicted = scores.argmax(axis=1)
        if reference is None:
            reference = scores
        row: dict[str, Any] = {
            "model": runtime.name,
            "bytes": runtime.size_bytes,
            "accuracy": None if y_true is None else float((predicted == y_true).mean()),
            "agreement_with_float": float((predicted == reference.argmax(axis=1)).mean()),
            "max_abs_score_difference": float(np.abs(scores - reference).max()) if len(scores) else 0.0,
            "expected_calibration_error": None if y_true is None else expected_calibration_error(y_true, scores),
            "num_examples": int(len(scores)),
        }
        if latency and len(inputs):
            for batch, runs in (latency_runs or LATENCY_RUNS).items():
                row[f"latency_ms_p50_batch{batch}"] = _median_latency_ms(runtime.scores, inputs, batch, runs)
        rows.append(row)
    return rows


def _in_batches(function: Any, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    parts = [np.asarray(function(inputs[start : start + batch]), np.float32) for start in range(0, len(inputs), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _median_latency_ms(function: Any, inputs: np.ndarray, batch: int, runs: int) -> float:
    repeats = -(-batch // len(inputs))
    chunk = np.concatenate([inputs] * repeats)[:batch] if repeats > 1 else inputs[:batch]
    function(chunk)  # untimed: first-call set-up (tracing, interpreter allocation for this size)
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        function(chunk)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def decode_files(paths: list[str], spec: PreprocessingSpec) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(pixels [N, S, S, 3] in [0, 255], normalized_pixels, indices of the files that decoded) via
    ``imgclf.preprocessing``."""
    import tensorflow as tf

    from imgclf.preprocessing import decode_and_resize, normalize

    pixels, kept = [], []
    for index, path in enumerate(paths):
        try:
            pixels.append(decode_and_resize(tf.io.read_file(path), spec).numpy())
        except (tf.errors.OpError, ValueError):
            continue
        kept.append(index)
    size = spec.image_size
    stacked = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.float32)
    return stacked, normalize(stacked, spec.normalization).numpy(), kept


def float_model_scores(model: Any, spec: PreprocessingSpec) -> Any:
    """A Keras model as the float reference: pixels in [0, 255] → class probabilities (serving_pixels' graph)."""
    import tensorflow as tf

    from imgclf.modeling.architectures import class_scores
    from imgclf.preprocessing import normalize

    forward = tf.function(
        lambda pixels: class_scores(model(normalize(pixels, spec.normalization), training=False)),
        input_signature=[tf.TensorSpec([None, spec.image_size, spec.image_size, 3], tf.float32)],
    )
    return lambda pixels: forward(tf.constant(pixels, tf.float32)).numpy()


# ------------------------------------------------------------------ the export's LiteRT part


def export_variants(
    out: Path,
    run: Any,
    model: Any,
    classes: list[str],
    spec: PreprocessingSpec,
    threshold: float | None,
    variants: list[str],
    representative_images: int = DEFAULT_REPRESENTATIVE_IMAGES,
    tta: str = "none",
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write ``litert_io`` and each variant's ``.tflite`` into ``out``; return (the card's ``litert``
    entry, variant → why it failed)."""
    from imgclf.evaluation.evaluate import choose_data
    from imgclf.serving.litert import LiteRTModel

    variants = check_tflite_variants(variants)
    write_litert_io(out, spec, classes, threshold)
    try:
        representative = representative_paths(run.manifest, representative_images) if "int8" in variants else []
    except DatasetError:  # the training files moved since training: int8 fails below, the others go on
        representative = []
    targets = {variant: out / tflite_file_name(variant, index == 0) for index, variant in enumerate(variants)}
    failures = {
        v: reason
        for v, reason in convert_in_child(run.best_checkpoint, spec, targets, representative).items()
        if reason is not None
    }
    loaded: dict[str, LiteRTModel] = {}
    for variant in variants:
        if variant in failures:
            targets[variant].unlink(missing_ok=True)
            continue
        try:
            loaded[variant] = LiteRTModel(targets[variant])
        except ExportError as error:  # written but unusable: never left where a server would load it
            failures[variant] = str(error)
            targets[variant].unlink(missing_ok=True)
    if TFLITE_FILE not in {targets[v].name for v in loaded}:
        for variant in list(loaded):  # the first variant failed: the next good one becomes model.tflite
            new = out / TFLITE_FILE
            targets[variant].rename(new)
            targets[variant] = new
            loaded[variant] = LiteRTModel(new)
            break
    dataset, source = choose_data(run, None, None)
    index = {name: i for i, name in enumerate(classes)}
    paths = [str(sample.path) for sample in dataset.samples]
    pixels, normalized, kept = decode_files(paths, spec)
    y_true = np.array([index[dataset.samples[i].label] for i in kept])
    runtimes = [Runtime("float (TensorFlow)", float_model_scores(model, spec), None, normalized=False)]
    runtimes += [Runtime(v, loaded[v].run, loaded[v].size_bytes, normalized=True) for v in loaded]
    rows = compare(runtimes, pixels, normalized, y_true, latency=False)
    float_row = rows[0]
    entry: dict[str, Any] = {
        "model_tflite": next((v for v in loaded if targets[v].name == TFLITE_FILE), None),
        "input": {
            "name": LITERT_INPUT,
            "shape": [-1, spec.image_size, spec.image_size, 3],
            "meaning": f"RGB pixels decoded and resized by imgclf.preprocessing, normalized {spec.normalization!r}",
            "decode": f"{LITERT_IO_DIR.as_posix()} signature {LITERT_DECODE_SIGNATURE!r} (image_bytes in)",
        },
        "output": {"name": OUTPUT_SCORES, "meaning": "class probabilities, columns in labels.txt order"},
        "tta": "none (the LiteRT variants are single-view)" if tta != "none" else "none",
        "served_signatures": list(LITERT_SERVED_SIGNATURES),
        "not_served": {
            OUTPUT_EMBEDDING_PROJECTION: "the .tflite answers scores only; no embedding, so no embedding drift",
            OUTPUT_EMBEDDING: "serving_features is not served from LiteRT",
            INPUT_PIXELS: "serving_pixels is not served from LiteRT",
        },
        "measured_on": {
            "data": source,
            "num_examples": float_row["num_examples"],
            "float": {k: float_row[k] for k in ("accuracy", "expected_calibration_error")},
        },
        "variants": {},
    }
    for row, variant in zip(rows[1:], loaded, strict=True):
        model_file = loaded[variant]
        entry["variants"][variant] = {
            "file": targets[variant].name,
            "bytes": model_file.size_bytes,
            **model_file.describe(),
            **(
                {
                    "representative_images": len(representative),
                    "representative_seed": REPRESENTATIVE_SEED,
                    "representative_source": "the run's training split",
                }
                if variant == "int8"
                else {}
            ),
            "metrics": {
                k: row[k]
                for k in (
                    "accuracy",
                    "agreement_with_float",
                    "expected_calibration_error",
                    "max_abs_score_difference",
                    "num_examples",
                )
            },
        }
    if failures:
        entry["failed"] = failures
    return entry, failures


# ------------------------------------------------------------------ imgclf evaluate / predict --tflite


def evaluate_run_variants(
    run_dir: str | Path,
    variants: list[str],
    data: str | None = None,
    split: str | None = None,
    representative_images: int = DEFAULT_REPRESENTATIVE_IMAGES,
    latency_runs: dict[int, int] | None = None,
) -> dict[str, Any]:
    """``imgclf evaluate RUN --tflite VARIANT``: convert the run's model (child process, as export does)
    and compare the float model with each variant on the evaluation split; writes ``RUN/eval/litert.json``."""
    import keras

    from imgclf.config import TrainConfig
    from imgclf.evaluation.evaluate import choose_data
    from imgclf.modeling.training import preprocessing_spec
    from imgclf.run_dir import RunDir, write_json
    from imgclf.serving.litert import LiteRTModel

    variants = check_tflite_variants(variants)
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.require_trained()
    spec = preprocessing_spec(TrainConfig.load(run.config))
    classes = run.read_labels()
    dataset, source = choose_data(run, data, split)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise ExportError(f"class(es) the model does not know: {', '.join(unknown)}")
    representative = representative_paths(run.manifest, representative_images) if "int8" in variants else []
    model = keras.models.load_model(run.best_checkpoint, compile=False)
    with tempfile.TemporaryDirectory(prefix="imgclf-litert-eval-") as scratch:
        targets = {variant: Path(scratch) / f"model.{variant}.tflite" for variant in variants}
        failed = {v: r for v, r in convert_in_child(run.best_checkpoint, spec, targets, representative).items() if r}
        loaded = {v: LiteRTModel(targets[v]) for v in variants if v not in failed}
        if not loaded:
            raise ExportError("LiteRT conversion failed: " + "; ".join(f"{v}: {r}" for v, r in failed.items()))
        index = {name: i for i, name in enumerate(classes)}
        pixels, normalized, kept = decode_files([str(s.path) for s in dataset.samples], spec)
        y_true = np.array([index[dataset.samples[i].label] for i in kept])
        runtimes = [Runtime("float (TensorFlow)", float_model_scores(model, spec), _size(run.best_checkpoint), False)]
        runtimes += [Runtime(f"LiteRT {v}", loaded[v].run, loaded[v].size_bytes, True) for v in loaded]
        rows = compare(runtimes, pixels, normalized, y_true, latency_runs=latency_runs)
    result: dict[str, Any] = {"data": source, "num_examples": len(kept), "rows": rows, "failed": failed}
    result["representative_images"] = len(representative) if representative else None
    write_json(run.eval_dir / "litert.json", result)
    return result


def compare_export_variants(
    version_dir: Path,
    variants: list[str],
    images: list[bytes],
    y_true: np.ndarray | None,
    latency_runs: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """``imgclf predict MODEL --tflite VARIANT``: the export's SavedModel (``serving_pixels``) and its
    LiteRT variants on the same decoded images (decoded once by the export's ``litert_io``)."""
    import tensorflow as tf

    from imgclf.contract import PIXELS_SIGNATURE
    from imgclf.export.inference import ExportedModel, LiteRTExportedModel

    saved = ExportedModel.load(version_dir)
    litert = {variant: LiteRTExportedModel.load_variant(version_dir, variant) for variant in variants}
    decoded = next(iter(litert.values())).decode(images)
    pixels_signature = saved.loaded.signatures[PIXELS_SIGNATURE]

    def float_scores(pixels: np.ndarray) -> np.ndarray:
        return pixels_signature(**{INPUT_PIXELS: tf.constant(pixels, tf.float32)})[OUTPUT_SCORES].numpy()

    saved_bytes = _size(saved.path / "saved_model.pb") + _size(saved.path / "variables")
    runtimes = [Runtime("float (SavedModel)", float_scores, saved_bytes, False)]
    runtimes += [Runtime(f"LiteRT {v}", m.runtime.run, m.runtime.size_bytes, True) for v, m in litert.items()]
    return compare(runtimes, decoded[INPUT_PIXELS], decoded[LITERT_INPUT], y_true, latency_runs=latency_runs)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
