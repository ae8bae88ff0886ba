"""numpy arrays to and from TensorFlow's ``TensorProto`` and the Open Inference Protocol's tensors: one
place for the model server's gRPC and OIP APIs and the gateway's remote backends.

Strings and the common numeric types skip ``tf.make_ndarray`` / ``tf.make_tensor_proto`` (their
overhead showed in the gateway's profile); anything else goes through them.

Example:
    >>> to_numpy(to_tensor_proto(np.array([1.5, 2.5], np.float32)))
    array([1.5, 2.5], dtype=float32)
"""

from __future__ import annotations

import struct

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


# ---------------------------------------------------------------- Open Inference Protocol (KServe v2)

# OIP datatype → numpy dtype (object: BYTES). BF16 is TensorFlow's bfloat16 (ml_dtypes).
OIP_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(tf.bfloat16.as_numpy_dtype),
    "BYTES": np.dtype(object),
}


def serialize_bytes(values: np.ndarray) -> bytes:
    """BYTES elements in row-major order, each a 4-byte little-endian length then the bytes."""
    parts = []
    for value in values.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def raw_bytes(value: np.ndarray) -> bytes:
    """A numeric tensor's raw bytes as OIP sends them (row-major, little-endian)."""
    value = np.ascontiguousarray(value)
    return value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()


def from_raw(data: bytes | memoryview, datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor from OIP's raw form (``raw_output_contents``, the binary extension)."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if datatype == "BYTES":
        view, offset = memoryview(data), 0
        values = np.empty(count, dtype=object)
        for index in range(count):
            (length,) = struct.unpack_from("<I", view, offset)
            values[index] = bytes(view[offset + 4 : offset + 4 + length])
            offset += 4 + length
        return values.reshape(shape)
    try:
        return np.frombuffer(data, dtype=OIP_DTYPES[datatype].newbyteorder("<")).reshape(shape)
    except (KeyError, ValueError) as error:
        raise ServingError("INTERNAL", f"cannot read a {datatype} tensor of shape {shape}: {error}") from None
