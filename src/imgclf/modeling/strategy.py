"""Pick a tf.distribute strategy for the hardware at hand.

* ``TF_CONFIG`` set → ``MultiWorkerMirroredStrategy`` (one process per worker, as TF documents);
* several GPUs → ``MirroredStrategy`` (one replica per GPU, gradients all-reduced);
* otherwise the default strategy (one CPU or GPU).

The global batch size is the per-replica batch size times ``num_replicas_in_sync``.
"""

from __future__ import annotations

import os

import tensorflow as tf


def choose_strategy() -> tf.distribute.Strategy:
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def describe(strategy: tf.distribute.Strategy) -> str:
    """Where training runs, in words: ``the CPU``, ``1 GPU``, ``2 GPUs (MirroredStrategy)``..."""
    replicas = strategy.num_replicas_in_sync
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return f"{replicas} replica(s) on several workers (MultiWorkerMirroredStrategy)"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"{replicas} GPUs (MirroredStrategy)"
    return "1 GPU" if tf.config.list_logical_devices("GPU") else "the CPU"
