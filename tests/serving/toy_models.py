"""Small SavedModels for the model-server tests, in the spirit of TF Serving's half_plus_two.

``write_toy_model(base, version, offset)`` writes ``base/<version>`` with these signatures:

- ``serving_default``: ``x`` float32 [None] → ``y`` = 0.5·x + offset (one output, like half_plus_two)
- ``multi``: ``a`` float32 [None], ``b`` int64 [None] → ``sum`` float32, ``doubled`` int64
- ``strings``: ``text`` string [None] → ``length`` int32, ``echo_bytes`` string
- ``classify_x``: serialized tf.Examples with float feature ``x`` → ``scores`` [None, 2], ``classes``
- ``regress_x``: serialized tf.Examples with float feature ``x`` → ``outputs`` = 0.5·x + offset
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tensorflow as tf


def write_toy_model(base: Path, version: int, offset: float = 2.0) -> Path:
    offset_value = tf.constant(offset, tf.float32)

    class Toy(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": 0.5 * x + offset_value}

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.float32, name="a"), tf.TensorSpec([None], tf.int64, name="b")]
        )
        def multi(self, a, b):
            return {"sum": a + tf.cast(b, tf.float32), "doubled": b * 2}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def strings(self, text):
            return {"length": tf.strings.length(text), "echo_bytes": text}

        def _parse(self, serialized):
            features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
            return features["x"]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            x = self._parse(inputs)
            positive = tf.sigmoid(x)
            scores = tf.stack([1 - positive, positive], axis=1)
            classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
            return {"scores": scores, "classes": classes}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": 0.5 * self._parse(inputs) + offset_value}

    toy = Toy()
    path = Path(base) / str(version)
    tmp = Path(base) / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(
        toy,
        str(tmp),
        signatures={
            "serving_default": toy.predict,
            "multi": toy.multi,
            "strings": toy.strings,
            "classify_x": toy.classify,
            "regress_x": toy.regress,
        },
    )
    _set_method(tmp, "classify_x", "tensorflow/serving/classify")
    _set_method(tmp, "regress_x", "tensorflow/serving/regress")
    tmp.rename(path)  # appear atomically, as imgclf export does
    return path


def _set_method(path: Path, signature: str, method: str) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in model.meta_graphs:
        meta_graph.signature_def[signature].method_name = method
    (path / "saved_model.pb").write_bytes(model.SerializeToString())
