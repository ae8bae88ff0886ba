"""One loaded SavedModel version: its signatures, its metadata, and running them.

The SignatureDefs come straight from ``saved_model.pb`` (what TF Serving reports as metadata);
execution goes through ``tf.saved_model.load``'s concrete functions. Nothing here knows about
imgclf's preprocessing: an export carries its own decode-and-resize graph.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from imgclf.contract import SERVING_SIGNATURE as DEFAULT_SIGNATURE
from imgclf.contract import WARMUP_FILE, read_labels
from imgclf.errors import ServingError
from imgclf.serving.status import from_tensorflow

MAX_WARMUP_RECORDS = 1000  # TF Serving's kMaxNumRecords


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: alias, dtype and static shape (``None`` = any size)."""

    alias: str
    dtype: tf.DType
    shape: tuple[int | None, ...] | None  # None: unknown rank

    @classmethod
    def from_tensor_info(cls, alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
        shape = None
        if not info.tensor_shape.unknown_rank:
            shape = tuple(None if dim.size < 0 else dim.size for dim in info.tensor_shape.dim)
        return cls(alias, tf.dtypes.as_dtype(info.dtype), shape)


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The ``serve`` MetaGraph's SignatureDefs, read from ``saved_model.pb``."""
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ServingError("NOT_FOUND", f"Could not find meta graph def matching supplied tags: {{ serve }} in {path}")


def signatures_of(
    signature_defs: dict[str, meta_graph_pb2.SignatureDef], served: Container[str] | None = None
) -> dict[str, Signature]:
    """The ``Signature`` of each SignatureDef (only the keys in ``served``, when given)."""
    return {
        key: Signature(
            key,
            definition.method_name,
            {alias: TensorSpec.from_tensor_info(alias, info) for alias, info in definition.inputs.items()},
            {alias: TensorSpec.from_tensor_info(alias, info) for alias, info in definition.outputs.items()},
        )
        for key, definition in signature_defs.items()
        if served is None or key in served
    }


class ServableVersion:
    """A SavedModel version loaded and ready to run.

    Example:
        >>> version = ServableVersion.load("registry/cats_dogs/3", "cats_dogs", 3)
        >>> version.run("serving_default", {"image_bytes": np.array([jpeg], dtype=object)})["labels"]
    """

    runtime = "TF2"  # the runtime label of TF Serving's latency metric (LiteRT versions: TFLite)

    def __init__(self, name: str, version: int, path: Path, loaded, signature_defs) -> None:  # type: ignore[no-untyped-def]
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = signature_defs
        self.signatures: dict[str, Signature] = signatures_of(signature_defs, loaded.signatures)

    @classmethod
    def load(cls, path: str | Path, name: str, version: int) -> ServableVersion:
        path = Path(path)
        signature_defs = read_signature_defs(path)
        loaded = tf.saved_model.load(str(path), tags=["serve"])
        return cls(name, version, path, loaded, signature_defs)

    @cached_property
    def class_labels(self) -> list[str]:
        """The export's class names in output order (``assets/labels.txt``; [] without one)."""
        try:
            return read_labels(self.path)
        except (OSError, UnicodeDecodeError):
            return []

    def signature(self, name: str) -> Signature:
        try:
            return self.signatures[name or DEFAULT_SIGNATURE]
        except KeyError:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.') from None

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call a signature on numpy inputs (validated by the caller); numpy outputs by alias."""
        function = self._loaded.signatures[signature_name or DEFAULT_SIGNATURE]
        try:
            outputs = function(**{alias: tf.constant(value) for alias, value in inputs.items()})
        except tf.errors.OpError as error:
            raise from_tensorflow(error) from None
        except (TypeError, ValueError) as error:  # shape or dtype that the signature rejects
            raise ServingError("INVALID_ARGUMENT", str(error).strip().splitlines()[0]) from None
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}

    def warmup_requests(self) -> list[prediction_log_pb2.PredictionLog]:
        """The version's ``assets.extra/tf_serving_warmup_requests`` records (at most 1000)."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return []
        records = []
        for raw in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS + 1):
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(raw.numpy())
            records.append(log)
        if len(records) > MAX_WARMUP_RECORDS:
            raise ServingError(
                "INVALID_ARGUMENT", f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        return records

    def warm_up(self, iterations: int = 1) -> int:
        """Replay the warmup Predict requests; returns how many ran. Raises on the first failure."""
        count = 0
        for log in self.warmup_requests():
            if log.WhichOneof("log_type") != "predict_log":
                raise ServingError("UNIMPLEMENTED", "Only Predict warmup requests are supported")
            request = log.predict_log.request
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
            for _ in range(iterations):
                self.run(request.model_spec.signature_name, inputs)
                count += 1
        return count
