"""numpy arrays to and from TensorFlow's ``TensorProto``: one place for the model server's gRPC API
and the gateway's gRPC backend.

Strings and the common numeric types skip ``tf.make_ndarray`` / ``tf.make_tensor_proto`` (their
overhead showed in the gateway's profile); anything else goes through them.

Example:
    >>> to_numpy(to_tensor_proto(np.array([1.5, 2.5], np.float32)))
    array([1.5, 2.5], dtype=float32)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from imgclf.errors import ServingError


def to_numpy(proto) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A TensorProto as numpy; strings and ``tensor_content`` without ``tf.make_ndarray``'s overhead."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    try:
        if proto.dtype == types_pb2.DT_STRING and proto.string_val:
            values = np.empty(len(proto.string_val), dtype=object)
            values[:] = list(proto.string_val)
            return values.reshape(shape)
        if proto.tensor_content and proto.dtype in _FAST_DTYPES:
            return np.frombuffer(proto.tensor_content, dtype=_FAST_DTYPES[proto.dtype]).reshape(shape)
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise ServingError("INVALID_ARGUMENT", f"Invalid input tensor: {error}") from None


def to_tensor_proto(value: np.ndarray):  # type: ignore[no-untyped-def]
    """numpy as a TensorProto; the common dtypes without ``tf.make_tensor_proto``'s overhead."""
    if value.dtype == object:
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in value.reshape(-1))
    elif value.dtype in _FAST_ENUMS:
        proto = tensor_pb2.TensorProto(dtype=_FAST_ENUMS[value.dtype], tensor_content=value.tobytes())
    else:
        return tf.make_tensor_proto(value)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in value.shape)
    return proto


_FAST_DTYPES = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
}
_FAST_ENUMS = {np.dtype(v): k for k, v in _FAST_DTYPES.items()}
