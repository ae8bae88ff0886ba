"""The Open Inference Protocol (KServe v2) over the model server's engine, shared by REST and gRPC.

The front ends (``open_inference_rest``, ``open_inference_grpc``) turn their wire formats into an
``InferRequest`` of numpy inputs; this module addresses the version (number or version label),
checks the inputs against the signature as Triton does (exact datatype, shape, names), runs them
through the ``Predictor`` (the same batching queues, version policy and metrics as TF Serving's
protocol) and turns the outputs into ``OutputTensor``s, with the classification extension's top-k
``"score:index[:label]"`` strings when asked (labels from the export's ``assets/labels.txt``).

Errors carry Triton's messages and codes (``model_repository_manager.cc``, ``infer_request.cc``):
an unknown model name is INVALID_ARGUMENT, an unknown version NOT_FOUND, a version still loading
UNAVAILABLE; ``oip_http_status`` maps them to HTTP as Triton's ``HttpCodeFromError`` does.

What OIP leaves open is settled so: a version string that is not an integer names a version label
(TF Serving's labels, e.g. ``stable``); ``parameters.signature_name`` picks a signature other than
``serving_default``; a BYTES input whose (or whose request's) ``parameters.content_type`` is
``"base64"`` (MLServer's codec name) carries base64 text in JSON, so encoded images fit in JSON.
"""

from __future__ import annotations

import base64
import binascii
import struct
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import tensorflow as tf

from imgclf.errors import ServingError
from imgclf.serving.manager import AVAILABLE
from imgclf.serving.predictor import ModelAddress, Predictor, chain
from imgclf.serving.servable import DEFAULT_SIGNATURE, ServableVersion, Signature, TensorSpec
from imgclf.serving.tensors import OIP_DTYPES

SERVER_NAME = "imgclf"
EXTENSIONS = ("classification", "binary_tensor_data")
PLATFORM = "tensorflow_savedmodel"  # what Triton reports for a SavedModel
API = "ModelInfer"  # the ``API`` label of :tensorflow:serving:request_latency for both OIP front ends
BASE64 = "base64"
UNKNOWN_ID = "<id_unknown>"

_NUMPY = OIP_DTYPES
_DATATYPE = {dtype: name for name, dtype in _NUMPY.items()}
HTTP_STATUS = {"OK": 200, "INTERNAL": 500, "NOT_FOUND": 404, "UNAVAILABLE": 503, "UNIMPLEMENTED": 501,
               "DEADLINE_EXCEEDED": 504, "UNKNOWN": 500, "DATA_LOSS": 500}  # fmt: skip


def oip_http_status(code: str) -> int:
    """Triton's ``HttpCodeFromError``: the rest (invalid argument, ...) is 400."""
    return HTTP_STATUS.get(code, 400)


def datatype_of(dtype: tf.DType) -> str:
    """The OIP datatype of a TensorFlow dtype (``tf.string`` → BYTES)."""
    if dtype == tf.string:
        return "BYTES"
    try:
        return _DATATYPE[np.dtype(dtype.as_numpy_dtype)]
    except (KeyError, TypeError):
        raise ServingError(
            "UNIMPLEMENTED", f"TensorFlow type {dtype.name} has no Open Inference Protocol datatype"
        ) from None


def numpy_dtype(datatype: str, name: str) -> np.dtype:
    try:
        return _NUMPY[datatype]
    except KeyError:
        raise ServingError("INVALID_ARGUMENT", f"invalid datatype '{datatype}' for input '{name}'") from None


def element_size(datatype: str) -> int:
    return 0 if datatype == "BYTES" else _NUMPY[datatype].itemsize


def shape_text(shape) -> str:  # type: ignore[no-untyped-def]
    """Triton's ``DimsListToString``: ``[-1,3]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def spec_shape(spec: TensorSpec) -> list[int]:
    """A signature tensor's shape in metadata: -1 for any size (and ``[-1]`` for unknown rank)."""
    if spec.shape is None:
        return [-1]
    return [-1 if d is None else d for d in spec.shape]


# ---------------------------------------------------------------- BYTES tensors


def deserialize_bytes(data: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """``count`` length-prefixed elements; INVALID_ARGUMENT when the buffer does not hold exactly that."""
    view = memoryview(data)
    values = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise _element_count_error(name, count, index)
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise _element_count_error(name, count, index)
        values[index] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"unexpected number of string elements for inference input '{name}', expecting {count} elements, "
            f"found more data ({len(view) - offset} bytes left)",
        )
    return values


def _element_count_error(name: str, count: int, found: int) -> ServingError:
    return ServingError(
        "INVALID_ARGUMENT",
        f"unexpected number of string elements {found} for inference input '{name}', expecting {count}",
    )


def tensor_from_bytes(data: bytes | memoryview, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """A tensor sent in binary (HTTP binary extension or gRPC ``raw_input_contents``)."""
    count = element_count(shape, name)
    if datatype == "BYTES":
        return deserialize_bytes(data, count, name).reshape(shape)
    dtype = numpy_dtype(datatype, name)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input byte size mismatch for input '{name}', expecting {expected} bytes but got {len(data)} bytes",
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def tensor_from_values(values: list, datatype: str, shape: list[int], name: str, encoding: str | None) -> np.ndarray:
    """A tensor sent as a flat list of values (JSON ``data`` or gRPC ``contents``)."""
    count = element_count(shape, name)
    if len(values) != count:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"unexpected number of elements for input '{name}': shape {shape_text(shape)} holds {count}, "
            f"got {len(values)}",
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        for index, value in enumerate(values):
            array[index] = _bytes_element(value, name, encoding)
        return array.reshape(shape)
    dtype = numpy_dtype(datatype, name)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            raise ServingError("INVALID_ARGUMENT", f"expected boolean values for input '{name}' of datatype BOOL")
    elif any(isinstance(v, bool | str | list | dict) or v is None for v in values):
        raise ServingError("INVALID_ARGUMENT", f"expected numbers for input '{name}' of datatype {datatype}")
    elif dtype.kind in "iu" and not all(isinstance(v, int) for v in values):
        raise ServingError("INVALID_ARGUMENT", f"expected integers for input '{name}' of datatype {datatype}")
    try:
        with np.errstate(over="raise"):
            array = np.array(values, dtype=dtype)
    except (OverflowError, ValueError, FloatingPointError):
        raise ServingError("INVALID_ARGUMENT", f"a value of input '{name}' is out of range for {datatype}") from None
    return array.reshape(shape)


def _bytes_element(value: Any, name: str, encoding: str | None) -> bytes:
    if isinstance(value, bytes):  # gRPC bytes_contents
        return base64.b64decode(value, validate=True) if encoding == BASE64 else value
    if not isinstance(value, str):
        raise ServingError("INVALID_ARGUMENT", f"expected strings for input '{name}' of datatype BYTES")
    if encoding == BASE64:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ServingError(
                "INVALID_ARGUMENT", f"input '{name}' has content_type base64 but is not base64"
            ) from None
    return value.encode("utf-8")


def element_count(shape: list[int], name: str) -> int:
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise ServingError("INVALID_ARGUMENT", f"Unable to parse 'shape' of input '{name}': {shape}")
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


# ---------------------------------------------------------------- requests and responses


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    value: np.ndarray


@dataclass
class RequestedOutput:
    name: str
    classification: int = 0  # top-k classes as "score:index[:label]" strings (0: the tensor itself)
    binary: bool | None = None  # HTTP: raw bytes after the JSON (None: the request's default)


@dataclass
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)

    def log_prefix(self) -> str:
        return f"[request id: {self.id or UNKNOWN_ID}] "


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    value: np.ndarray  # object dtype for BYTES (bytes elements)
    requested: RequestedOutput | None = None


@dataclass
class InferResult:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


def content_type(parameters: dict[str, Any], default: str | None = None) -> str | None:
    """An input's ``content_type`` parameter, else the request's (``default``): ``base64`` or None."""
    value = parameters.get("content_type", default)
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- the protocol's operations


class OpenInference:
    """OIP's model operations over a ``Predictor`` (the model server's engine)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.manager = predictor.manager
        self.metrics = predictor.metrics

    # -------------------------------------------------------- health and metadata

    def server_ready(self) -> bool:
        return self.manager.is_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": _server_version(), "extensions": list(EXTENSIONS)}

    def servable(self, name: str, version: str = "") -> ServableVersion:
        """The version a request addresses, with Triton's errors for unknown models and versions."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request")
        if name not in self.manager.model_names():
            raise ServingError("INVALID_ARGUMENT", f"Request for unknown model: '{name}' is not found")
        if not version:
            try:
                return self.predictor.servable(ModelAddress(name))
            except ServingError as error:
                if error.code != "NOT_FOUND":
                    raise
                raise ServingError(
                    "NOT_FOUND", f"Request for unknown model: '{name}' has no available versions"
                ) from None
        number = _version_number(version)
        if number is None:
            if version not in self.manager.labels(name):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"failed to get model version from specified version string '{version}' (details: stol), "
                    "version should be an integral value > 0 or a version label of the model",
                )
            number = self.manager.labels(name)[version]
        try:
            return self.predictor.servable(ModelAddress(name, number))
        except ServingError as error:
            if error.code != "NOT_FOUND":
                raise
        states = {s.version: s.state for s in self.manager.status(name)} if self._has_versions(name) else {}
        if number in states and states[number] != AVAILABLE and states[number] != "END":
            raise ServingError(
                "UNAVAILABLE", f"Request for unknown model: '{name}' version {number} is not at ready state"
            ) from None
        raise ServingError("NOT_FOUND", f"Request for unknown model: '{name}' version {number} is not found") from None

    def model_ready(self, name: str, version: str = "") -> bool:
        """Ready when the addressed version serves; unknown models and versions raise (as Triton)."""
        self.servable(name, version)
        return True

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        servable = self.servable(name, version)
        signature = servable.signature(DEFAULT_SIGNATURE)
        return {
            "name": name,
            "versions": [str(v) for v in self._available(name)],
            "platform": PLATFORM,
            "inputs": [_tensor_metadata(spec) for _, spec in sorted(signature.inputs.items())],
            "outputs": [_tensor_metadata(spec) for _, spec in sorted(signature.outputs.items())],
        }

    def _available(self, name: str) -> list[int]:
        return sorted(s.version for s in self.manager.status(name) if s.state == AVAILABLE)

    def _has_versions(self, name: str) -> bool:
        try:
            self.manager.status(name)
        except ServingError:
            return False
        return True

    # -------------------------------------------------------- inference

    def infer(self, request: InferRequest) -> tuple[ServableVersion, Future[InferResult]]:
        """Check and queue a request; the future resolves to its outputs (or a ServingError)."""
        servable = self.servable(request.model_name, request.model_version)
        signature_name = request.parameters.get("signature_name") or DEFAULT_SIGNATURE
        if not isinstance(signature_name, str) or signature_name not in servable.signatures:
            raise ServingError("INVALID_ARGUMENT", f"{request.log_prefix()}unknown signature '{signature_name}' "
                                                   f"for model '{request.model_name}'")  # fmt: skip
        signature = servable.signature(signature_name)
        inputs = self._check_inputs(request, signature)
        wanted = self._check_outputs(request, signature)
        only = tuple(o.name for o in wanted) if request.outputs else ()  # () : every output, no filtering step
        future = self.predictor.predict(servable, signature.name, inputs, only)
        version = str(servable.version)
        return servable, chain(future, lambda outputs: self._result(request, servable, version, wanted, outputs))

    def _check_inputs(self, request: InferRequest, signature: Signature) -> dict[str, np.ndarray]:
        name, prefix = request.model_name, request.log_prefix()
        seen: dict[str, InferInput] = {}
        for item in request.inputs:
            if item.name not in signature.inputs:
                raise ServingError("INVALID_ARGUMENT", f"unexpected inference input '{item.name}' for model '{name}'")
            if item.name in seen:
                raise ServingError("INVALID_ARGUMENT", f"{prefix}input '{item.name}' already exists in request")
            seen[item.name] = item
        missing = [alias for alias in sorted(signature.inputs) if alias not in seen]
        if missing:
            got = ",".join(f"'{n}'" for n in seen)
            raise ServingError(
                "INVALID_ARGUMENT",
                f"{prefix}expected {len(signature.inputs)} inputs but got {len(seen)} inputs for model '{name}'. "
                f"Got input(s) [{got}], but missing required input(s) [{','.join(repr(n) for n in missing)}]. "
                "Please provide all required input(s).",
            )
        checked = {}
        for alias, item in seen.items():
            spec = signature.inputs[alias]
            expected = datatype_of(spec.dtype)
            if item.datatype != expected:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"{prefix}inference input '{alias}' data-type is '{item.datatype}', but model '{name}' expects "
                    f"'{expected}'",
                )
            wanted = spec_shape(spec)
            shape = list(item.value.shape)
            if spec.shape is not None and (
                len(wanted) != len(shape) or any(w not in (-1, s) for w, s in zip(wanted, shape, strict=True))
            ):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"{prefix}unexpected shape for input '{alias}' for model '{name}'. Expected {shape_text(wanted)}, "
                    f"got {shape_text(shape)}.",
                )
            checked[alias] = item.value
        return checked

    def _check_outputs(self, request: InferRequest, signature: Signature) -> list[RequestedOutput]:
        if not request.outputs:
            return [RequestedOutput(alias) for alias in sorted(signature.outputs)]
        names = set()
        for output in request.outputs:
            if output.name not in signature.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"unexpected inference output '{output.name}' for model '{request.model_name}'",
                )
            if output.name in names:
                raise ServingError(
                    "INVALID_ARGUMENT", f"{request.log_prefix()}output '{output.name}' already exists in request"
                )
            if output.classification < 0:
                raise ServingError("INVALID_ARGUMENT", f"Unable to parse 'classification' of output '{output.name}'")
            names.add(output.name)
        return request.outputs

    def _result(
        self,
        request: InferRequest,
        servable: ServableVersion,
        version: str,
        wanted: list[RequestedOutput],
        outputs: dict[str, np.ndarray],
    ) -> InferResult:
        tensors = []
        for output in wanted:
            value = outputs[output.name]
            if output.classification:
                value = classify(value, output.classification, servable.class_labels)
                tensors.append(OutputTensor(output.name, "BYTES", list(value.shape), value, output))
            else:
                datatype = "BYTES" if value.dtype == object else _datatype_of_numpy(value.dtype)
                tensors.append(OutputTensor(output.name, datatype, list(value.shape), value, output))
        return InferResult(request.model_name, version, request.id, tensors)


def classify(value: np.ndarray, count: int, labels: list[str]) -> np.ndarray:
    """The classification extension: per batch row, the top ``count`` as ``"score:index[:label]"``.

    As Triton's ``TopkClassifications``: the first dimension is the batch, the rest is flattened;
    scores print as C's ``%f`` for floats, integers as they are; the label is the export's class
    name at that index, if it has one.
    """
    if value.dtype == object or value.dtype == np.bool_ or value.dtype.kind not in "iuf":
        raise ServingError(
            "INVALID_ARGUMENT",
            f"class result not available for output due to unsupported type '{_datatype_of_numpy(value.dtype)}'",
        )
    rows = value.reshape(value.shape[0], -1) if value.ndim else value.reshape(1, 1)
    keep = min(count, rows.shape[1])
    result = np.empty((rows.shape[0], keep), dtype=object)
    floating = value.dtype.kind == "f"
    for row_index, row in enumerate(rows):
        order = np.argsort(-row.astype(np.float64), kind="stable")[:keep]
        for column, index in enumerate(order):
            score = f"{float(row[index]):f}" if floating else str(int(row[index]))
            text = f"{score}:{index}" + (f":{labels[index]}" if index < len(labels) else "")
            result[row_index, column] = text.encode()
    return result


def _datatype_of_numpy(dtype: np.dtype) -> str:
    try:
        return _DATATYPE[np.dtype(dtype)]
    except KeyError:
        raise ServingError("UNIMPLEMENTED", f"numpy type {dtype} has no Open Inference Protocol datatype") from None


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.alias, "datatype": datatype_of(spec.dtype), "shape": spec_shape(spec)}


def _version_number(version: str) -> int | None:
    text = version.strip()
    if not text.lstrip("+-").isdigit():
        return None
    number = int(text)
    if number < 0:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"invalid model version specified '{version}' , version should be an integral value > 0",
        )
    return number


def _server_version() -> str:
    try:
        return metadata.version("imgclf")
    except metadata.PackageNotFoundError:
        return "0"
