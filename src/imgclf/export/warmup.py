"""TF Serving warmup requests (``assets.extra/tf_serving_warmup_requests``).

A TFRecord file of ``PredictionLog`` protos that TF Serving (and ``imgclf serve``) replays after
loading a version and before marking it AVAILABLE, so the first real request does not pay for
graph tracing and memory allocation. The images are synthetic (a colour gradient), so no
training data ends up inside the export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from imgclf.contract import INPUT_BYTES, SERVING_SIGNATURE
from imgclf.preprocessing import PreprocessingSpec

WARMUP_BATCH_SIZES = (1, 8)


def synthetic_jpeg(size: int, seed: int = 0) -> bytes:
    """A deterministic gradient image, JPEG-encoded."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack(
        [x * 255 // max(size - 1, 1), y * 255 // max(size - 1, 1), rng.integers(0, 255, (size, size))], -1
    )
    return tf.io.encode_jpeg(tf.constant(pixels.astype(np.uint8))).numpy()


def write_warmup_requests(path: Path, model_name: str, spec: PreprocessingSpec) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = synthetic_jpeg(spec.image_size)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch_size in WARMUP_BATCH_SIZES:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_SIGNATURE)
            )
            request.inputs[INPUT_BYTES].CopyFrom(tf.make_tensor_proto([image] * batch_size))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
