"""TF Serving's JSON formats (``util/json_tensor.cc``): requests to numpy, numpy to responses.

Row (``instances``) and columnar (``inputs``) requests, ``{"b64": ...}`` binary strings, dtype
checks against the signature, and responses that echo the request's format. Floats are written
the way TF Serving writes them: six significant digits when that round-trips the float32 value,
else nine, ``.0`` after whole numbers, and ``NaN``/``Infinity`` tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2

from imgclf.errors import ServingError
from imgclf.serving.servable import TensorSpec

ROW, COLUMNAR = "row", "columnar"
FLOAT32_MAX_EXACT_INT = (1 << 24) - 1
FLOAT64_MAX_EXACT_INT = (1 << 53) - 1
INT32 = (-(1 << 31), (1 << 31) - 1)
INT64 = (-(1 << 63), (1 << 63) - 1)


def parse_body(body: bytes) -> dict:
    if not body:
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        offset = getattr(error, "pos", 0)
        message = f"JSON Parse error: {getattr(error, 'msg', error)} at offset: {offset}"
        raise ServingError("INVALID_ARGUMENT", message) from None
    if not isinstance(document, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_show(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Value: {_show(document)} not formatted correctly. 'signature_name' key must be a string value.",
        )
    return name


def _show(value: Any) -> str:
    return json.dumps(value, indent=4)


# ---------------------------------------------------------------- requests


def predict_inputs(document: dict, specs: dict[str, TensorSpec]) -> tuple[dict[str, np.ndarray], str]:
    """The request's tensors by input alias, and whether it was row or columnar format."""
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Value: {_show(document)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist ",
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise ServingError(
                "INVALID_ARGUMENT", f"JSON Value: {_show(document)} Excepting 'instances' to be an list/array"
            )
        if not instances:
            raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_show(document)} No values in 'instances' array")
        return _from_instances(instances, specs), ROW
    if has_inputs:
        return _from_inputs(document["inputs"], specs), COLUMNAR
    raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _from_instances(instances: list, specs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise ServingError(
            "INVALID_ARGUMENT",
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map",
        )
    named = _is_named_object(instances[0])
    names = sorted(specs)
    rows: dict[str, list] = {name: [] for name in names}
    shapes: dict[str, tuple[int, ...]] = {}
    for index, element in enumerate(instances):
        if named:
            if not _is_named_object(element):
                raise ServingError("INVALID_ARGUMENT", f"Expecting object but got list at item {index} of input list")
            for key, value in element.items():
                if key not in specs:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                        f"INVALID_ARGUMENT: JSON object: does not have named input: {key}",
                    )
                _add_row(rows, shapes, key, value, specs[key], f"{index} key: {key}")
            if set(element) != set(specs):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Failed to process element: {index} of 'instances' list. JSON object: {_show(element)} "
                    f"keys must be equal to: {','.join(names)}",
                )
        else:
            if _is_named_object(element):
                raise ServingError(
                    "INVALID_ARGUMENT", f"Expecting value/list but got object at item {index} of input list"
                )
            _add_row(rows, shapes, names[0], element, specs[names[0]], str(index))
    return {name: _stack(values, specs[name]) for name, values in rows.items() if values}


def _add_row(rows: dict, shapes: dict, name: str, value: Any, spec: TensorSpec, where: str) -> None:
    try:
        array = to_array(value, spec)
        if name in shapes and shapes[name] != array.shape:
            shape = "[" + ",".join(map(str, shapes[name])) + "]"
            raise ServingError(
                "INVALID_ARGUMENT", f"Expecting shape {shape} but got: [{','.join(map(str, array.shape))}]"
            )
    except ServingError as error:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Failed to process element: {where} of 'instances' list. Error: {error.code}: {error.message}",
        ) from None
    shapes[name] = array.shape
    rows[name].append(array)


def _stack(values: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    if spec.dtype == tf.string:
        stacked = np.empty((len(values), *values[0].shape), dtype=object)
        for index, value in enumerate(values):
            stacked[index] = value.item() if value.ndim == 0 else value
        return stacked
    return np.stack(values)


def _from_inputs(value: Any, specs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or is_b64(value):
        if len(specs) > 1:
            raise ServingError(
                "INVALID_ARGUMENT",
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map",
            )
        name = next(iter(specs))
        return {name: to_array(value, specs[name])}
    tensors = {}
    for name in sorted(specs):
        if name not in value:
            raise ServingError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = to_array(value[name], specs[name])
    return tensors


def _shape_of(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def to_array(value: Any, spec: TensorSpec) -> np.ndarray:
    """A JSON value as a numpy array of the signature's dtype, with TF Serving's checks."""
    shape = _shape_of(value)
    dtype = spec.dtype
    if dtype in (tf.float32, tf.float64) and shape:
        fast = _fast_numeric(value, shape, dtype)
        if fast is not None:
            return fast
    leaves: list = []
    _collect(value, 0, shape, dtype, leaves)
    if dtype == tf.string:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)


def _fast_numeric(value: list, shape: list[int], dtype: tf.DType) -> np.ndarray | None:
    """np.array for well-formed numeric lists; None sends the value down the checking path."""
    try:
        array = np.array(value)
    except ValueError:
        return None
    if list(array.shape) != shape or array.dtype.kind not in "fi":
        return None
    if array.dtype.kind == "i":
        limit = FLOAT32_MAX_EXACT_INT if dtype == tf.float32 else FLOAT64_MAX_EXACT_INT
        if array.size and np.abs(array).max() > limit:
            return None
    elif dtype == tf.float32:
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            return None
    return array.astype(dtype.as_numpy_dtype)


def _collect(value: Any, level: int, shape: list[int], dtype: tf.DType, leaves: list) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {_show(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}",
            )
        leaves.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise ServingError("INVALID_ARGUMENT", f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}",
        )
    for item in value:
        _collect(item, level + 1, shape, dtype, leaves)


def dtype_name(dtype: tf.DType) -> str:
    """TF's ``DataTypeString``: ``float``, ``double``, ``int64``, ``string``..."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)[3:].lower()


def _type_error(value: Any, dtype: tf.DType) -> ServingError:
    kinds = {dict: "Object", list: "Array", str: "String", bool: "True" if value is True else "False"}
    kind = "Null" if value is None else kinds.get(type(value), "Number")
    return ServingError(
        "INVALID_ARGUMENT", f"JSON Value: {_show(value)} Type: {kind} is not of expected type: {dtype_name(dtype)}"
    )


def _leaf(value: Any, dtype: tf.DType) -> Any:
    if isinstance(value, dict):
        if dtype != tf.string:
            raise _type_error(value, dtype)
        if not is_b64(value):
            raise ServingError(
                "INVALID_ARGUMENT", f"JSON Value: {_show(value)} not formatted correctly for base64 data"
            )
        return decode_b64(value["b64"])
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if dtype in (tf.float32, tf.float64):
        if not number:
            raise _type_error(value, dtype)
        limit = FLOAT32_MAX_EXACT_INT if dtype == tf.float32 else FLOAT64_MAX_EXACT_INT
        lossy = (
            abs(value) > limit
            if isinstance(value, int)
            else (dtype == tf.float32 and math.isfinite(value) and abs(value) > float(np.finfo(np.float32).max))
        )
        if lossy:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Cannot convert JSON value: {value} to {'float' if dtype == tf.float32 else 'double'} "
                "without loss of precision.",
            )
        return value
    if dtype in (tf.int8, tf.int16, tf.int32, tf.uint8, tf.int64, tf.uint32, tf.uint64):
        bounds = {tf.int64: INT64, tf.uint32: (0, (1 << 32) - 1), tf.uint64: (0, (1 << 64) - 1)}.get(dtype, INT32)
        if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
            raise _type_error(value, dtype)
        return value
    if dtype == tf.bool:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == tf.string:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode()
    raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {_show(value)} to type: {dtype_name(dtype)}")


def decode_b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ServingError("INVALID_ARGUMENT", "Unable to base64 decode") from None


def examples_from_json(document: dict) -> tuple[list[example_pb2.Example], example_pb2.Example | None]:
    """A classify/regress request's ``examples`` (and optional ``context``) as tf.Examples."""
    context = _example(document["context"]) if "context" in document else None
    if "examples" not in document:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Value: {_show(document)} When method is classify, key 'examples' is expected and was not found",
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise ServingError(
            "INVALID_ARGUMENT", f"JSON Value: {_show(document)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_show(document)} 'examples' value is an empty array")
    return [_example(item) for item in examples], context


def _example(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        kind = "Array" if isinstance(value, list) else type(value).__name__
        raise ServingError("INVALID_ARGUMENT", f"Example must be JSON object but got JSON {kind}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(feature, name, item)
    return example


def _add_feature_value(feature: example_pb2.Feature, name: str, value: Any) -> None:
    kind = feature.WhichOneof("kind")
    if isinstance(value, bool):
        wanted, target, item = "int64_list", feature.int64_list, int(value)
    elif isinstance(value, int):
        wanted, target, item = "int64_list", feature.int64_list, value
    elif isinstance(value, float):
        wanted, target, item = "float_list", feature.float_list, value
    elif isinstance(value, str):
        wanted, target, item = "bytes_list", feature.bytes_list, value.encode()
    elif is_b64(value):
        wanted, target, item = "bytes_list", feature.bytes_list, decode_b64(value["b64"])
    else:
        kind_name = "Null" if value is None else ("Array" if isinstance(value, list) else "Object")
        raise ServingError("INVALID_ARGUMENT", f"Feature: {name} has element with unexpected JSON type: {kind_name}")
    if kind not in (None, wanted):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Unexpected element type in feature: {name} expecting type: {kind.split('_')[0]}",
        )
    target.value.append(item)


# ---------------------------------------------------------------- responses


def format_float(value: float, dtype: type = np.float32) -> str:
    """A float as TF Serving writes it (``WriteDecimal``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = format(value, "g")
    if dtype(text) != dtype(value):
        text = format(value, ".9g" if dtype == np.float32 else ".17g")
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _write_value(value: Any, as_bytes: bool, out: list[str]) -> None:
    """Append the JSON for ``value`` (an array of any rank, or one element of one) to ``out``."""
    if isinstance(value, np.ndarray) and value.ndim:
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(", ")
            _write_value(item, as_bytes, out)
        out.append("]")
        return
    if isinstance(value, np.ndarray | np.generic):
        kind, wide = value.dtype.kind, value.dtype.itemsize > 4
        value = value.item()
    else:  # an element of a string (object) array
        kind, wide = "O", False
    if kind == "f":
        out.append(format_float(value, np.float64 if wide else np.float32))
    elif kind == "b":
        out.append("true" if value else "false")
    elif kind in "iu":
        out.append(str(int(value)))
    elif as_bytes:
        out.append('{"b64": "' + base64.b64encode(value).decode() + '"}')
    else:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        out.append(json.dumps(text, ensure_ascii=False))


def _is_bytes(alias: str, array: np.ndarray) -> bool:
    return alias.endswith("_bytes") and array.dtype == object


def predict_response(outputs: dict[str, np.ndarray], request_format: str) -> bytes:
    """``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` for columnar ones."""
    if not outputs:
        raise ServingError("INVALID_ARGUMENT", "Cannot convert empty tensor map to JSON")
    out: list[str] = []
    aliases = sorted(outputs)
    if request_format == COLUMNAR:
        out.append('{"outputs": ')
        if len(aliases) == 1:
            _write_value(outputs[aliases[0]], _is_bytes(aliases[0], outputs[aliases[0]]), out)
        else:
            out.append("{")
            for index, alias in enumerate(aliases):
                out.append((", " if index else "") + json.dumps(alias) + ": ")
                _write_value(outputs[alias], _is_bytes(alias, outputs[alias]), out)
            out.append("}")
        out.append("}")
        return "".join(out).encode()
    batch = None
    for alias in aliases:
        value = outputs[alias]
        if value.ndim == 0:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {alias} has no shape information ")
        if batch is not None and value.shape[0] != batch:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} expecting: {batch}",
            )
        batch = value.shape[0]
    out.append('{"predictions": [')
    for row in range(batch or 0):
        out.append(",\n    " if row else "\n    ")
        if len(aliases) == 1:
            _write_value(outputs[aliases[0]][row], _is_bytes(aliases[0], outputs[aliases[0]]), out)
            continue
        out.append("{")
        for index, alias in enumerate(aliases):
            out.append((", " if index else "") + json.dumps(alias) + ": ")
            _write_value(outputs[alias][row], _is_bytes(alias, outputs[alias]), out)
        out.append("}")
    out.append("\n]}")
    return "".join(out).encode()


def classify_response(result) -> bytes:  # type: ignore[no-untyped-def]
    rows = []
    for classifications in result.classifications:
        pairs = [f"[{json.dumps(c.label)}, {format_float(c.score)}]" for c in classifications.classes]
        rows.append("[" + ", ".join(pairs) + "]")
    return ('{"results": [' + ", ".join(rows) + "]}").encode()


def regress_response(result) -> bytes:  # type: ignore[no-untyped-def]
    return ('{"results": [' + ", ".join(format_float(r.value) for r in result.regressions) + "]}").encode()


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
