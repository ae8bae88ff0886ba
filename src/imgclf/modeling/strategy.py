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
        return _reduce_nests(tf.distribute.MultiWorkerMirroredStrategy())
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


def _reduce_nests(strategy: tf.distribute.Strategy) -> tf.distribute.Strategy:
    """``strategy.reduce`` over a nest of per-replica values, one value at a time (on this instance only).

    Keras 3's ``fit`` reduces the first batch, an ``(images, labels)`` tuple, to build the model
    (``TensorFlowTrainer._maybe_symbolic_build``); ``MultiWorkerMirroredStrategy``'s cross-device reduce
    takes one value, not a tuple, and fails with "Attempt to convert a value (PerReplica...)". Keras then
    averages each step's logs with ``axis=0`` (``reduce_per_replica``), but the logs are scalars:
    "Invalid reduction dimension 0 for input with 0 dimensions". Both are handled here.
    """
    reduce_one = strategy.reduce

    def reduce_item(reduce_op, item, axis):  # type: ignore[no-untyped-def]
        local = strategy.experimental_local_results(item)[0]
        if axis is not None and getattr(local, "shape", None) is not None and local.shape.rank == 0:
            axis = None  # a scalar per replica (a metric): there is no axis 0 to reduce over
        return reduce_one(reduce_op, item, axis=axis)

    def reduce(reduce_op, value, axis=None):  # type: ignore[no-untyped-def]
        return tf.nest.map_structure(lambda item: reduce_item(reduce_op, item, axis), value)

    strategy.reduce = reduce  # type: ignore[method-assign]
    return strategy
