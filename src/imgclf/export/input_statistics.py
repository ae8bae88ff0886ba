"""Monitoring's input statistics, computed inside the export's signature.

The ``serving_default`` signature decodes and resizes every image anyway; measuring the
statistics there, on the pixels the model sees (after the resize, before normalization), costs a
few reductions on a [N, size, size, 3] tensor and spares the gateway a second decode of every
upload. ``imgclf export`` measures the reference profile through the same signature, so the
reference and production values come from one function.

Output ``input_statistics``: float32 [N, len(STATISTICS)], columns in ``STATISTICS`` order
(``imgclf.monitoring.input_stats``): per-channel mean and standard deviation of RGB (0–255),
brightness and contrast (mean and standard deviation of ITU-R 601 luma), sharpness (variance of
the 4-neighbour Laplacian of luma), and the decoded image's width, height and width / height.

Example:
    >>> pixels, sizes = decode_and_resize_batch(tf.constant([jpeg_bytes]), spec)
    >>> input_statistics(pixels, sizes).shape
    TensorShape([1, 12])
"""

from __future__ import annotations

import tensorflow as tf

from imgclf.monitoring.input_stats import STATISTICS

# ITU-R 601 luma weights, as Pillow's "L" mode.
_LUMA = (0.299, 0.587, 0.114)


def input_statistics(pixels: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """float32 [N, H, W, 3] pixels in [0, 255] and int32 [N, 2] decoded (height, width) → float32 [N, 12]."""
    pixels = tf.cast(pixels, tf.float32)
    mean = tf.reduce_mean(pixels, axis=[1, 2])
    std = tf.math.reduce_std(pixels, axis=[1, 2])
    luma = tf.tensordot(pixels, tf.constant(_LUMA, tf.float32), axes=[[3], [0]])
    if pixels.shape[1] is not None and min(pixels.shape[1], pixels.shape[2]) < 3:
        sharpness = tf.zeros_like(mean[:, 0])  # no interior pixel to take a Laplacian at
    else:
        centre = luma[:, 1:-1, 1:-1]
        laplacian = luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] - 4 * centre
        sharpness = tf.math.reduce_variance(laplacian, axis=[1, 2])
    sizes = tf.cast(sizes, tf.float32)
    height, width = sizes[:, 0], sizes[:, 1]
    columns = [
        mean[:, 0],
        mean[:, 1],
        mean[:, 2],
        std[:, 0],
        std[:, 1],
        std[:, 2],
        tf.reduce_mean(luma, axis=[1, 2]),
        tf.math.reduce_std(luma, axis=[1, 2]),
        sharpness,
        width,
        height,
        tf.math.divide_no_nan(width, height),
    ]
    assert len(columns) == len(STATISTICS)
    return tf.stack(columns, axis=1)
