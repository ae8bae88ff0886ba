"""tf.data input pipelines for training and evaluation.

read file → decode and resize (``imgclf.preprocessing``; parallel) → cache → shuffle → batch →
augment (training only; ``imgclf.data.augmentation``) → normalize (``imgclf.preprocessing``) →
prefetch. Decoded, resized images are cached in memory, so from the second epoch on files are
not read or decoded again; augmentation runs after the cache, so every epoch sees new variants.

Example:

>>> spec = PreprocessingSpec(image_size=224)
>>> train_ds = make_dataset(paths, labels, spec, batch_size=32, training=True)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from imgclf.preprocessing import PreprocessingSpec, decode_and_resize, normalize

AUTOTUNE = tf.data.AUTOTUNE


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    spec: PreprocessingSpec,
    batch_size: int,
    training: bool,
    augmenter: keras.Sequential | None = None,
    cache: bool = True,
    seed: int = 42,
) -> tf.data.Dataset:
    """Batches of (normalized pixels, integer label)."""
    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(paths), tf.string), tf.constant(np.asarray(labels), tf.int32))
    )

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return decode_and_resize(tf.io.read_file(path), spec), label

    dataset = files.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    # Files were inspected before training; this only guards against files changed since.
    dataset = dataset.ignore_errors()
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(lambda x, y: (normalize(x, spec.normalization), y), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
