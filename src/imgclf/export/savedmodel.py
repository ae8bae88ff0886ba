"""``imgclf export``: write a run's best model as a versioned SavedModel that TF Serving loads.

``REGISTRY/NAME/<version>/`` holds:

* the SavedModel, with four signatures (names in ``imgclf.contract``):

  - ``serving_default``: ``image_bytes`` (tf.string [N], encoded JPEG/PNG/GIF/BMP/WebP) →
    ``scores`` (float32 [N, classes]), ``class_ids`` (int64 [N]), ``labels`` (string [N]),
    ``embedding_projection`` (float32 [N, 32]) and ``input_statistics`` (float32 [N, 12]), the
    last two for monitoring;
  - ``serving_features``: ``image_bytes`` → the same, plus ``embedding`` (the pooled features);
  - ``serving_pixels``: ``pixels`` (float32 [N, size, size, 3], RGB in [0, 255], already resized)
    → ``scores``, ``class_ids``, ``labels``, ``embedding_projection``;
  - ``classify``, for TF Serving's Classify API (REST ``:classify``, gRPC ``Classify``):
    ``inputs`` (tf.string [N], serialized tf.Example protos, the encoded image in the bytes feature
    ``image/encoded``) → ``classes`` (string [N, classes], the labels in output order) and
    ``scores`` (float32 [N, classes]). Its method name is ``tensorflow/serving/classify`` (written
    into ``saved_model.pb`` after saving: TF2 saves every signature as a predict one), so TF
    Serving accepts it also with ``--enable_signature_method_name_check``. Classify answers every
    class's score; the binary threshold below applies only to ``class_ids`` and ``labels``.

  With ``--tta flip`` or ``flip+crops`` every signature averages the class scores over augmented
  views of each image (``imgclf.export.tta``); names and shapes stay the same.

  All run ``imgclf.preprocessing`` inside the graph (the same decode and resize for encoded
  images), so clients never preprocess. Binary models pick the positive (second) class when its
  score ≥ the threshold chosen by ``imgclf evaluate`` (0.5 if the run was never evaluated); other
  models pick the highest score.
* ``assets/labels.txt``; ``assets.extra/model_card.json``; ``assets.extra/tf_serving_warmup_requests``;
  ``assets.extra/reference_profile.json``: what monitoring compares production with, measured by
  this SavedModel on the reference images (the run's validation split, or ``reference_data``);
  see ``imgclf.monitoring.profile``.

* ``assets.extra/export_manifest.json``, written last: every file's size and SHA-256, so a copy of
  the version that is not whole is recognised (``imgclf.contract.check_export``).

The version is one more than the highest existing integer version. Everything is written under a
hidden temporary name first and renamed into place by the registry (``Registry.publish``), so TF
Serving (which only looks at integer directory names) never sees half an export. The first
version of a model becomes its stable version; later ones are candidates until promoted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
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
    LABELS_FILE,
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_LABELS,
    OUTPUT_SCORES,
    PIXELS_SIGNATURE,
    PROJECTION_DIM,
    PROJECTION_SEED,
    REFERENCE_PROFILE_FILE,
    SAVED_MODEL_FILE,
    SERVING_SIGNATURE,
    TTA_NONE,
    WARMUP_FILE,
    check_tflite_variants,
    check_tta,
)
from imgclf.errors import ExportError
from imgclf.export.decision import decision
from imgclf.export.input_statistics import input_statistics
from imgclf.export.litert import DEFAULT_REPRESENTATIVE_IMAGES, export_variants
from imgclf.export.model_card import build_model_card
from imgclf.export.reference import build_reference_profile
from imgclf.export.tta import first_view, make_views, mean_over_views, view_count
from imgclf.export.warmup import write_warmup_requests
from imgclf.modeling.architectures import EMBEDDING_LAYER_NAME, class_scores
from imgclf.modeling.training import preprocessing_spec
from imgclf.preprocessing import PreprocessingSpec, decode_and_resize_batch, normalize
from imgclf.run_dir import RunDir, read_json

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def projection_matrix(input_dim: int, dim: int = PROJECTION_DIM, seed: int = PROJECTION_SEED) -> np.ndarray:
    """The fixed random projection of embeddings: Gaussian, scaled by 1/√dim (Johnson–Lindenstrauss)."""
    return (np.random.default_rng(seed).standard_normal((input_dim, dim)) / np.sqrt(dim)).astype(np.float32)


def with_embedding(model: keras.Model) -> keras.Model:
    """The model with two outputs: its embedding layer's output and its scores."""
    embedding = model.get_layer(EMBEDDING_LAYER_NAME).output
    return keras.Model(model.inputs, [embedding, model.outputs[0]], name=f"{model.name}_with_embedding")


def build_archive(
    model: keras.Model,
    classes: list[str],
    spec: PreprocessingSpec,
    threshold: float | None,
    tta: str = TTA_NONE,
) -> keras.export.ExportArchive:
    """The ExportArchive with the serving signatures, around an in-memory Keras model.

    ``tta`` (``imgclf.export.tta``): every signature runs the model on the views of its resized
    pixels and answers the mean of their class scores, decisions made on that mean, and view 0's
    (the image's own) embedding; ``none`` builds the graph without views.
    ``classify``'s method name is set afterwards, on the written files (``set_classify_method``).
    """
    labels = tf.constant(classes)
    both = with_embedding(model)
    projection = tf.constant(projection_matrix(int(both.outputs[0].shape[-1])))
    views = view_count(tta)

    def run_model(pixels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Resized pixels [N, S, S, 3] → (embedding [N, D] float32, scores [N, classes]) over the views."""
        embedding, raw = both(normalize(make_views(pixels, tta), spec.normalization), training=False)
        return first_view(tf.cast(embedding, tf.float32), views), mean_over_views(class_scores(raw), views)

    def outputs(embedding: tf.Tensor, scores: tf.Tensor) -> dict[str, tf.Tensor]:
        class_ids = decision(scores, threshold)
        return {
            OUTPUT_SCORES: scores,
            OUTPUT_CLASS_IDS: class_ids,
            OUTPUT_LABELS: tf.gather(labels, class_ids),
            OUTPUT_EMBEDDING_PROJECTION: tf.matmul(embedding, projection),
        }

    def from_bytes(image_bytes: tf.Tensor, with_embedding: bool) -> dict[str, tf.Tensor]:
        pixels, sizes = decode_and_resize_batch(image_bytes, spec)
        embedding, scores = run_model(pixels)
        answer = outputs(embedding, scores)
        answer[OUTPUT_INPUT_STATISTICS] = input_statistics(pixels, sizes)
        if with_embedding:
            answer[OUTPUT_EMBEDDING] = embedding
        return answer

    def serve_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return from_bytes(image_bytes, with_embedding=False)

    def serve_features(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return from_bytes(image_bytes, with_embedding=True)

    def serve_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return outputs(*run_model(pixels))

    def serve_examples(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        features = tf.io.parse_example(inputs, {EXAMPLE_IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        pixels, _ = decode_and_resize_batch(features[EXAMPLE_IMAGE_FEATURE], spec)
        _, scores = run_model(pixels)
        return {CLASSIFY_OUTPUT_CLASSES: tf.broadcast_to(labels, tf.shape(scores)), CLASSIFY_OUTPUT_SCORES: scores}

    size = spec.image_size
    archive = keras.export.ExportArchive()
    archive.track(both)
    archive.add_endpoint(
        SERVING_SIGNATURE, serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_BYTES)]
    )
    archive.add_endpoint(
        FEATURES_SIGNATURE,
        serve_features,
        input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_BYTES)],
    )
    archive.add_endpoint(
        PIXELS_SIGNATURE,
        serve_pixels,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=INPUT_PIXELS)],
    )
    archive.add_endpoint(
        CLASSIFY_SIGNATURE, serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUTS)]
    )
    return archive


def set_classify_method(export_dir: Path) -> None:
    """Give the ``classify`` signature TF Serving's classify method name in ``saved_model.pb``.

    ``tf.saved_model.save`` writes ``tensorflow/serving/predict`` for every signature; TF Serving
    started with ``--enable_signature_method_name_check`` (and TF1-era tools) refuse Classify on
    it. The fingerprint TensorFlow keeps beside the file is written again to match. Call it before
    the export's manifest is written.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = export_dir / SAVED_MODEL_FILE
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if CLASSIFY_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD_NAME
    path.write_bytes(saved_model.SerializeToString(deterministic=True))
    fingerprint = export_dir / "fingerprint.pb"
    if fingerprint.exists():
        try:
            from tensorflow.python.saved_model.fingerprinting_utils import write_fingerprint
        except ImportError:  # a TensorFlow without it: no fingerprint is better than a wrong one
            fingerprint.unlink()
        else:
            write_fingerprint(str(export_dir))


def _threshold(run: RunDir, classes: list[str]) -> tuple[float | None, str]:
    if len(classes) != 2:
        return None, "argmax"
    path = run.eval_dir / "threshold.json"
    if path.is_file():
        chosen = read_json(path)
        return float(chosen["threshold"]), f"imgclf evaluate ({chosen['objective']})"
    return 0.5, "default 0.5 (run not evaluated)"


def _check_classes(classes: list[str], model: keras.Model, run: RunDir) -> None:
    """Refuse labels that ``assets/labels.txt`` cannot hold one per line, or that do not match the
    model's outputs: every prediction of such an export would fail or be mislabelled."""
    from imgclf.data.sources import check_label
    from imgclf.errors import DatasetError

    try:
        for label in classes:
            check_label(label, f"{run.labels}")
    except DatasetError as error:
        raise ExportError(f"cannot export: {error}") from None
    units = model.output_shape[-1]
    if (2 if units == 1 else units) != len(classes):
        raise ExportError(
            f"cannot export: {run.labels} names {len(classes)} classes but the model has {units} output(s)"
        )


def check_model_name(name: str) -> str:
    """A model name TF Serving and the registry accept (it becomes a directory and a URL segment)."""
    if not _NAME_PATTERN.match(name):
        raise ExportError(f"model name {name!r} may use letters, digits, '_', '.' and '-' only")
    return name


def write_export(
    run_dir: str | Path,
    out: Path,
    name: str,
    reference_data: str | None = None,
    tta: str = TTA_NONE,
    tflite: list[str] | tuple[str, ...] = (),
    representative_images: int = DEFAULT_REPRESENTATIVE_IMAGES,
) -> dict[str, Any]:
    """Write a trained run's export into the new directory ``out``; return its model card.

    Everything but what names the version: the caller (``imgclf.registry.publish.export_run``)
    writes the card with its version and the manifest, then renames ``out`` into place.
    ``reference_data`` (a folder or CSV manifest; its ``val`` split if it has splits) replaces the
    run's validation split as the images the reference profile is measured on. ``tta`` (``none``,
    ``flip`` or ``flip+crops``) bakes test-time augmentation into every signature
    (``imgclf.export.tta``); the reference profile is measured with it, as production will be.
    ``tflite`` names LiteRT variants to write beside the SavedModel (``imgclf.export.litert``); the
    card's ``litert`` entry describes them and, under ``failed``, the ones whose conversion failed.
    """
    check_tta(tta)
    tflite = check_tflite_variants(list(tflite))
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.require_trained()
    check_model_name(name)
    config = TrainConfig.load(run.config)
    classes = run.read_labels()
    spec = preprocessing_spec(config)
    threshold, threshold_source = _threshold(run, classes)
    model = keras.models.load_model(run.best_checkpoint, compile=False)
    _check_classes(classes, model, run)

    build_archive(model, classes, spec, threshold, tta).write_out(str(out), verbose=False)
    set_classify_method(out)
    (out / LABELS_FILE).parent.mkdir(exist_ok=True)
    (out / LABELS_FILE).write_text("\n".join(classes) + "\n", encoding="utf-8")
    write_warmup_requests(out / WARMUP_FILE, name, spec)
    card = build_model_card(run, config, classes, spec, threshold, threshold_source, name, tta)
    profile = build_reference_profile(out, run, classes, reference_data)
    profile.save(out)
    card["monitoring"] = {
        "reference_profile": REFERENCE_PROFILE_FILE.as_posix(),
        "reference_images": profile.window.size,
        "reference_source": profile.source,
        "reference_accuracy": profile.accuracy,
        "embedding": profile.embedding,
    }
    if tflite:
        card["litert"], _ = export_variants(
            out, run, model, classes, spec, threshold, list(tflite), representative_images, tta
        )
    return card
