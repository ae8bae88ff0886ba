"""How an export turns class scores into a class id: one function for every signature and runtime."""

from __future__ import annotations

import tensorflow as tf


def decision(scores: tf.Tensor, threshold: float | None) -> tf.Tensor:
    """Class ids (int64 [N]) from scores [N, classes]: binary models pick the positive (second) class
    when its score ≥ ``threshold``; ``threshold=None`` picks the highest score."""
    if threshold is None:
        return tf.argmax(scores, axis=-1, output_type=tf.int64)
    return tf.cast(scores[:, 1] >= threshold, tf.int64)
