"""Training-time augmentation as Keras layers, applied to batches of [0, 255] pixels.

Rotation, zoom and translation are composed into one affine transform and applied in a single
bilinear warp (``RandomAffine``): Keras' separate ``RandomRotation``, ``RandomZoom`` and
``RandomTranslation`` layers each warp the whole batch, so doing it once is about 3x cheaper on
CPU with the same family of transforms. Flips and contrast use Keras' own layers.

Example:

>>> augmenter = build_augmenter(AugmentationConfig(rotation=0.05, zoom=0.1), seed=0)
>>> augmented = augmenter(batch_of_pixels, training=True)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from imgclf.config import AugmentationConfig


class RandomAffine(keras.layers.Layer):
    """Random rotation (fraction of a turn), zoom and translation (fractions of the size), one warp.

    Each image gets its own angle in ±``rotation``·2π, scale in 1 ± ``zoom`` and shift in
    ±``translation``·size; pixels sampled from outside the image are reflected.
    Only active with ``training=True``.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        zoom: float = 0.0,
        translation: float = 0.0,
        fill_mode: str = "reflect",
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.translation = rotation, zoom, translation
        self.fill_mode, self.seed = fill_mode, seed

    def _uniform(self, batch: tf.Tensor, limit: float, offset: int) -> tf.Tensor:
        seed = None if self.seed is None else self.seed + offset
        return tf.random.uniform([batch], -limit, limit, seed=seed)

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        shape = tf.shape(images)
        batch = shape[0]
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        angle = self._uniform(batch, self.rotation * 2 * math.pi, 0)
        scale = 1.0 + self._uniform(batch, self.zoom, 1)
        shift_x = self._uniform(batch, self.translation, 2) * width
        shift_y = self._uniform(batch, self.translation, 3) * height
        # Output pixel p samples the input at M (p - c) + c - shift, with M = scale * R(angle).
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2 = cx - shift_x - (cos * cx - sin * cy)
        b2 = cy - shift_y - (sin * cx + cos * cy)
        zeros = tf.zeros_like(angle)
        transform = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode=self.fill_mode)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
            "fill_mode": self.fill_mode,
            "seed": self.seed,
        }


def build_augmenter(config: AugmentationConfig, seed: int) -> keras.Sequential | None:
    """The enabled augmentations as one Keras model (None if none are on)."""
    if not config.enabled:
        return None
    layers: list[keras.layers.Layer] = []
    if config.flip != "none":
        layers.append(keras.layers.RandomFlip(config.flip, seed=seed))
    if config.rotation > 0 or config.zoom > 0 or config.translation > 0:
        layers.append(RandomAffine(config.rotation, config.zoom, config.translation, seed=seed + 1))
    if config.contrast > 0:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 2))
    return keras.Sequential(layers, name="augmentation") if layers else None
