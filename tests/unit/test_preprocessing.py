"""The single preprocessing path: decoding every accepted format, resize modes, normalization."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from imgclf.preprocessing import (
    PreprocessingSpec,
    decode_and_resize,
    decode_image,
    normalize,
    preprocess_batch,
    resize_image,
)
from tests.conftest import encode, random_pixels


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_lossless_formats_decode_to_the_exact_pixels(fmt):
    pixels = random_pixels()
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(tf.constant(encode(pixels, fmt, **options))).numpy()
    np.testing.assert_array_equal(decoded, pixels)


def test_jpeg_decodes_close_to_the_original():
    pixels = np.full((32, 32, 3), (200, 30, 90), np.uint8)
    decoded = decode_image(tf.constant(encode(pixels, "JPEG", quality=95))).numpy()
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded.astype(int) - pixels).max() <= 4


def test_grayscale_becomes_three_equal_channels():
    gray = random_pixels()[..., 0]
    decoded = decode_image(tf.constant(encode(gray, "PNG"))).numpy()
    assert decoded.shape == gray.shape + (3,)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_alpha_channel_is_dropped_keeping_stored_colour():
    rgba = np.dstack([random_pixels(), np.zeros((40, 56), np.uint8)])  # fully transparent
    decoded = decode_image(tf.constant(encode(rgba, "PNG"))).numpy()
    np.testing.assert_array_equal(decoded, rgba[..., :3])


def test_gif_uses_the_first_frame_only():
    frames = [Image.fromarray(np.full((10, 10, 3), value, np.uint8)) for value in (255, 0, 128)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(tf.constant(buffer.getvalue())).numpy()
    assert decoded.shape == (10, 10, 3)
    assert decoded.min() >= 250


def test_cmyk_jpeg_decodes_to_rgb():
    cmyk = Image.fromarray(random_pixels()).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG")
    assert decode_image(tf.constant(buffer.getvalue())).shape == (40, 56, 3)


def test_undecodable_bytes_raise():
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(tf.constant(b"this is not an image"))


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_resize_modes_give_square_float_pixels_in_range(mode):
    image = tf.constant(random_pixels(30, 90))
    out = resize_image(image, 24, mode).numpy()
    assert out.shape == (24, 24, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_crop_keeps_the_centre_and_pad_adds_black_bars():
    # A wide image: left third red, centre third green, right third blue.
    image = np.zeros((30, 90, 3), np.uint8)
    image[:, :30, 0] = image[:, 30:60, 1] = image[:, 60:, 2] = 255
    cropped = resize_image(tf.constant(image), 10, "crop").numpy()
    assert cropped[..., 1].mean() > 250 and cropped[..., 0].mean() < 5
    padded = resize_image(tf.constant(image), 30, "pad").numpy()
    assert padded[:5].max() == 0 and padded[-5:].max() == 0  # bars above and below
    assert padded[15, :, 0].max() > 250  # content in the middle row


def test_stretch_of_constant_image_is_exact():
    image = tf.constant(np.full((17, 43, 3), 77, np.uint8))
    np.testing.assert_allclose(resize_image(image, 8, "stretch").numpy(), 77.0, atol=1e-4)


@pytest.mark.parametrize(
    ("normalization", "low", "high"),
    [("symmetric", -1.0, 1.0), ("unit", 0.0, 1.0), ("raw", 0.0, 255.0)],
)
def test_normalization_ranges(normalization, low, high):
    pixels = tf.constant([[0.0, 127.5, 255.0]])
    out = normalize(pixels, normalization).numpy()
    np.testing.assert_allclose(out[0, [0, 2]], [low, high], atol=1e-6)


def test_caffe_normalization_swaps_to_bgr_and_subtracts_the_mean():
    out = normalize(tf.constant([[[10.0, 20.0, 30.0]]]), "caffe").numpy()
    np.testing.assert_allclose(out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_batch_path_equals_single_image_path():
    spec = PreprocessingSpec(image_size=16, normalization="symmetric")
    blobs = [encode(random_pixels(seed=s), "PNG") for s in range(3)]
    batch = preprocess_batch(tf.constant(blobs), spec).numpy()
    for i, blob in enumerate(blobs):
        single = normalize(decode_and_resize(tf.constant(blob), spec), "symmetric").numpy()
        np.testing.assert_allclose(batch[i], single, atol=1e-6)


def test_spec_rejects_unknown_values():
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessingSpec(image_size=8, resize_mode="squash")
    with pytest.raises(ValueError, match="normalization"):
        PreprocessingSpec(image_size=8, normalization="imagenet")


def test_random_affine_moves_pixels_only_in_training():
    from imgclf.data.augmentation import RandomAffine

    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)), tf.float32)
    layer = RandomAffine(rotation=0.1, zoom=0.2, translation=0.2, seed=1)
    np.testing.assert_array_equal(layer(images, training=False).numpy(), images.numpy())
    moved = layer(images, training=True).numpy()
    assert moved.shape == images.shape and np.abs(moved - images.numpy()).mean() > 5
    identity = RandomAffine(seed=1)(images, training=True).numpy()  # all factors zero: no change
    np.testing.assert_allclose(identity, images.numpy(), atol=1e-3)
