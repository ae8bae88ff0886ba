"""Test-time augmentation baked into the export (issue 21): ``imgclf export --tta flip|flip+crops``.

The proof: every signature of a TTA export answers the mean of the Keras model's class scores on
the views of the preprocessed pixels (1e-5), on real photos; decisions follow the mean; the
embedding is the image's own; a no-TTA export answers the model's single-view scores.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf import api
from imgclf.config import TrainConfig
from imgclf.contract import (
    CLASSIFY_SIGNATURE,
    EXAMPLE_IMAGE_FEATURE,
    FEATURES_SIGNATURE,
    MODEL_CARD_FILE,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
)
from imgclf.errors import ConfigError
from imgclf.export.savedmodel import with_embedding
from imgclf.export.tta import crop_boxes, make_views, mean_over_views, view_count
from imgclf.modeling.architectures import class_scores
from imgclf.modeling.training import preprocessing_spec
from imgclf.preprocessing import decode_and_resize_batch, normalize
from imgclf.registry.publish import export_run
from tests.helpers import one_error_line, run_cli

TOLERANCE = 1e-5


def _reference_views(pixels: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views, written out independently of ``imgclf.export.tta``: the image, crops, mirrors."""
    bases = [pixels]
    if mode == "flip+crops":
        size = pixels.shape[1]
        side = round(size * 0.875)
        far, middle = size - side, (size - side) // 2
        for top, left in ((middle, middle), (0, 0), (0, far), (far, 0), (far, far)):
            crop = pixels[:, top : top + side, left : left + side, :]
            bases.append(tf.image.resize(crop, [size, size], method="bilinear").numpy())
    views = []
    for base in bases:
        views += [base, base[:, :, ::-1, :]]
    return views


def _model_on(model: keras.Model, pixels: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, class scores) of the Keras model on resized pixels [N, S, S, 3] in [0, 255]."""
    embedding, raw = with_embedding(model)(normalize(pixels, normalization), training=False)
    return keras.ops.convert_to_numpy(embedding).astype(np.float32), keras.ops.convert_to_numpy(class_scores(raw))


def _example(image: bytes) -> bytes:
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature={EXAMPLE_IMAGE_FEATURE: feature})).SerializeToString()


# ---------------------------------------------------------------- the views (no model)


def test_views_are_view_major_and_start_with_the_image():
    pixels = tf.random.uniform([3, 16, 16, 3], 0, 255, seed=1)
    for mode, count in (("none", 1), ("flip", 2), ("flip+crops", 12)):
        views = make_views(pixels, mode)
        assert views.shape == (3 * count, 16, 16, 3) and view_count(mode) == count
        np.testing.assert_array_equal(views[:3], pixels)
        for index, expected in enumerate(_reference_views(pixels.numpy(), mode)[:count]):
            np.testing.assert_allclose(views[3 * index : 3 * index + 3], expected, atol=1e-4)
    stacked = tf.constant(np.arange(24, dtype=np.float32).reshape(6, 4))  # 2 views of 3 rows
    np.testing.assert_array_equal(mean_over_views(stacked, 2), (stacked[:3] + stacked[3:]) / 2)
    assert crop_boxes(224) == [(14, 14, 196), (0, 0, 196), (0, 28, 196), (28, 0, 196), (28, 28, 196)]


def test_a_bad_tta_is_one_cli_line_and_creates_nothing(tmp_path, capsys):
    registry = tmp_path / "registry"
    code, _, err = run_cli(["export", tmp_path, "--registry", registry, "--tta", "rotate"], capsys)
    one_error_line(code, err, "invalid --tta 'rotate': choose one of none, flip, flip+crops")
    assert not registry.exists()
    with pytest.raises(ConfigError, match="invalid tta 'flips'"):
        api.export(tmp_path, registry=registry, tta="flips")


# ---------------------------------------------------------------- real exports on real photos


@pytest.mark.parametrize("mode", ["flip", "flip+crops"])
@pytest.mark.parametrize("run_fixture", ["shapes_run", "binary_run"])  # softmax and sigmoid heads
def test_tta_export_scores_are_the_mean_of_the_model_on_the_views(run_fixture, mode, photos, tmp_path, request):
    run = request.getfixturevalue(run_fixture)
    version_dir = export_run(run.path, tmp_path / "registry", "tta", tta=mode)
    card = json.loads((version_dir / MODEL_CARD_FILE).read_text())
    assert card["tta"]["mode"] == mode and card["tta"]["views"] == view_count(mode)

    spec = preprocessing_spec(TrainConfig.load(run.config))
    images = [data for _, data in photos]  # real JPEGs of cats and dogs, larger than the input size
    pixels = decode_and_resize_batch(tf.constant(images), spec)[0].numpy()
    model = keras.models.load_model(run.best_checkpoint, compile=False)
    per_view = [_model_on(model, view, spec.normalization) for view in _reference_views(pixels, mode)]
    expected = np.mean([scores for _, scores in per_view], axis=0)
    identity_embedding, single_view = per_view[0]
    assert np.abs(expected - single_view).max() > 1e-4  # the views differ: the test can tell TTA from none

    loaded = tf.saved_model.load(str(version_dir))
    served = loaded.signatures[SERVING_SIGNATURE](image_bytes=tf.constant(images))
    np.testing.assert_allclose(served["scores"].numpy(), expected, atol=TOLERANCE, rtol=0)
    threshold = card["decision"]["threshold"]
    scores = served["scores"].numpy()
    decided = (scores[:, 1] >= threshold).astype(np.int64) if threshold is not None else scores.argmax(axis=1)
    np.testing.assert_array_equal(served["class_ids"].numpy(), decided)  # decided on the mean
    assert [label.decode() for label in served["labels"].numpy()] == [card["classes"][i] for i in decided]

    features = loaded.signatures[FEATURES_SIGNATURE](image_bytes=tf.constant(images))
    np.testing.assert_allclose(features["scores"].numpy(), expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(features["embedding"].numpy(), identity_embedding, atol=TOLERANCE, rtol=0)
    classified = loaded.signatures[CLASSIFY_SIGNATURE](inputs=tf.constant([_example(i) for i in images]))
    np.testing.assert_allclose(classified["scores"].numpy(), expected, atol=TOLERANCE, rtol=0)
    from_pixels = loaded.signatures[PIXELS_SIGNATURE](pixels=tf.constant(pixels))
    np.testing.assert_allclose(from_pixels["scores"].numpy(), expected, atol=TOLERANCE, rtol=0)


def test_no_tta_export_answers_the_model_on_the_image_alone(shapes_run, photos, tmp_path, capsys):
    registry = tmp_path / "registry"
    code, out, err = run_cli(["export", shapes_run.path, "--registry", registry, "--name", "plain"], capsys)
    assert code == 0, err
    assert "Test-time augmentation" not in out
    version_dir = registry / "plain" / "1"
    card = json.loads((version_dir / MODEL_CARD_FILE).read_text())
    assert card["tta"] == {"mode": "none", "views": 1}

    spec = preprocessing_spec(TrainConfig.load(shapes_run.config))
    images = [data for _, data in photos]
    pixels = decode_and_resize_batch(tf.constant(images), spec)[0].numpy()
    model = keras.models.load_model(shapes_run.best_checkpoint, compile=False)
    embedding, expected = _model_on(model, pixels, spec.normalization)
    loaded = tf.saved_model.load(str(version_dir))
    features = loaded.signatures[FEATURES_SIGNATURE](image_bytes=tf.constant(images))
    np.testing.assert_allclose(features["scores"].numpy(), expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(features["embedding"].numpy(), embedding, atol=TOLERANCE, rtol=0)

    # The CLI's --tta flip: same signatures, same output names and shapes, its card says flip.
    code, out, err = run_cli(
        ["export", shapes_run.path, "--registry", registry, "--name", "plain", "--tta", "flip"], capsys
    )
    assert code == 0, err
    assert "Test-time augmentation flip" in out
    flipped_dir = registry / "plain" / "2"
    assert json.loads((flipped_dir / MODEL_CARD_FILE).read_text())["tta"]["mode"] == "flip"
    flipped = tf.saved_model.load(str(flipped_dir))
    assert set(flipped.signatures) == set(loaded.signatures)
    for name in loaded.signatures:
        plain_outputs = loaded.signatures[name].structured_outputs
        flip_outputs = flipped.signatures[name].structured_outputs
        assert {k: (v.dtype, v.shape.as_list()) for k, v in plain_outputs.items()} == {
            k: (v.dtype, v.shape.as_list()) for k, v in flip_outputs.items()
        }, name
