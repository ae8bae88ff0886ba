"""The Open Inference Protocol's REST API (``/v2/...``) beside TF Serving's on the REST port.

    GET  /v2                                            server metadata (name, version, extensions)
    GET  /v2/health/live, /v2/health/ready              200, or 400 when not ready (Triton)
    GET  /v2/models/{name}[/versions/{v}]               model metadata: inputs and outputs with OIP datatypes
    GET  /v2/models/{name}[/versions/{v}]/ready         200, or the error that says why not
    POST /v2/models/{name}[/versions/{v}]/infer         JSON tensors and the binary tensor data extension

A request body may be a JSON header followed by raw tensor data (``Inference-Header-Content-Length``
says how long the header is; each binary input's ``parameters.binary_data_size`` how many bytes
it takes, in input order). Outputs are returned binary when their ``parameters.binary_data`` (or
the request's ``parameters.binary_data_output``) is true: the answer is then the JSON header and
the outputs' bytes, with the same header. ``Content-Encoding: gzip`` or ``deflate`` bodies are
accepted. Errors are ``{"error": message}`` with Triton's status codes.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
import zlib
from concurrent.futures import Future
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imgclf.errors import ServingError
from imgclf.serving.open_inference import (
    API,
    BASE64,
    InferInput,
    InferRequest,
    InferResult,
    OpenInference,
    OutputTensor,
    RequestedOutput,
    content_type,
    oip_http_status,
    tensor_from_bytes,
    tensor_from_values,
)
from imgclf.serving.tensors import raw_bytes, serialize_bytes

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, separators=(",", ":")).encode(), status_code=status, media_type=JSON)


def _error(error: ServingError) -> Response:
    return _json({"error": error.message}, oip_http_status(error.code))


class OpenInferenceRest:
    """The ``/v2`` handlers; ``routes`` go in front of the TF Serving API's catch-all route."""

    def __init__(self, protocol: OpenInference, timeout_seconds: float) -> None:
        self.protocol = protocol
        self.metrics = protocol.metrics
        self.timeout = timeout_seconds
        self.routes = [
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route(_MODEL, self.model_metadata, methods=["GET"]),
            Route(_VERSION, self.model_metadata, methods=["GET"]),
            Route(_MODEL + "/ready", self.model_ready, methods=["GET"]),
            Route(_VERSION + "/ready", self.model_ready, methods=["GET"]),
            Route(_MODEL + "/infer", self.infer, methods=["POST"]),
            Route(_VERSION + "/infer", self.infer, methods=["POST"]),
            Route("/v2/{path:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        ]

    async def server_metadata(self, request: Request) -> Response:
        return _json(self.protocol.server_metadata())

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.protocol.server_ready() else 400)

    async def not_found(self, request: Request) -> Response:
        return _json({"error": "Not Found"}, 404)

    async def model_metadata(self, request: Request) -> Response:
        try:
            return _json(self.protocol.model_metadata(*_address(request)))
        except ServingError as error:
            return _error(error)

    async def model_ready(self, request: Request) -> Response:
        try:
            self.protocol.model_ready(*_address(request))
        except ServingError as error:
            return _error(error)
        return Response(status_code=200)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name, version = _address(request)
        code = "OK"
        try:
            body = _decompress(await request.body(), request.headers.get("content-encoding", ""))
            infer_request, binary_output = parse_infer_request(body, request.headers.get(HEADER_LENGTH), name, version)
            _, future = self.protocol.infer(infer_request)
            result = await self._wait(future)
            content, header_length = encode_infer_response(result, binary_output)
        except ServingError as error:
            code = error.code
            return _error(error)
        except Exception as error:  # a bug: answer 500 in the protocol's shape and keep serving
            code = "INTERNAL"
            return _error(ServingError(code, f"{type(error).__name__}: {error}"))
        finally:
            self.metrics.request_count.labels(name, code).inc()
        self.metrics.request_latency.labels(name, API, "REST").observe((time.perf_counter() - started) * 1e6)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(content, media_type=BINARY, headers={HEADER_LENGTH: str(header_length)})

    async def _wait(self, future: Future):  # type: ignore[no-untyped-def]
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None


def _address(request: Request) -> tuple[str, str]:
    return request.path_params["name"], request.path_params.get("version", "")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, EOFError, zlib.error):
        raise ServingError("INVALID_ARGUMENT", f"Unable to decompress the request body ({encoding})") from None
    if encoding not in ("", "identity"):
        raise ServingError("UNIMPLEMENTED", f"Unsupported Content-Encoding: {encoding}")
    return body


# ---------------------------------------------------------------- request parsing


def parse_infer_request(body: bytes, header_length: str | None, name: str, version: str) -> tuple[InferRequest, bool]:
    """The request, and whether outputs are binary unless they say otherwise (``binary_data_output``)."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ServingError("INVALID_ARGUMENT", f"Unable to parse {HEADER_LENGTH}, got: {header_length}") from None
        if size < 0 or size > len(body):
            raise ServingError(
                "INVALID_ARGUMENT", f"inference header size should be in range (0, {len(body)}), got: {header_length}"
            )
    view = memoryview(body)
    document = _parse_header(view[:size])
    parameters = _object(document.get("parameters", {}), "parameters")
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'id'")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'inputs'")
    default_type = content_type(parameters)
    binary = view[size:]
    offset = 0
    parsed = []
    for item in inputs:
        tensor, used = _parse_input(item, binary[offset:], default_type, header_length is not None)
        offset += used
        parsed.append(tensor)
    if offset != len(binary):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"unexpected additional input data: {len(binary) - offset} bytes after the inputs' binary data",
        )
    outputs = [_parse_output(item) for item in _list(document.get("outputs", []), "outputs")]
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'binary_data_output'")
    request = InferRequest(name, version, request_id, parameters, parsed, outputs)
    return request, binary_output


def _parse_header(header: memoryview) -> dict:
    if not len(header):
        raise ServingError("INVALID_ARGUMENT", "failed to parse the request JSON buffer: The document is empty.")
    try:
        document = json.loads(bytes(header))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = getattr(error, "msg", str(error))
        offset = getattr(error, "pos", 0)
        raise ServingError(
            "INVALID_ARGUMENT", f"failed to parse the request JSON buffer: {message} at {offset}"
        ) from None
    if not isinstance(document, dict):
        raise ServingError("INVALID_ARGUMENT", "failed to parse the request JSON buffer: not an object")
    return document


def _parse_input(item: Any, binary: memoryview, default_type: str | None, has_header: bool) -> tuple[InferInput, int]:
    """One input and how many bytes of the binary section it took."""
    item = _object(item, "inputs")
    name = item.get("name")
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise ServingError("INVALID_ARGUMENT", f"Unable to parse 'datatype' of input '{name}'")
    shape = item.get("shape")
    if not isinstance(shape, list):
        raise ServingError("INVALID_ARGUMENT", f"Unable to parse 'shape' of input '{name}'")
    parameters = _object(item.get("parameters", {}), "parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ServingError("INVALID_ARGUMENT", "Unable to parse 'binary_data_size'")
        if "data" in item:
            raise ServingError(
                "INVALID_ARGUMENT", f"Input '{name}' has 'data' and 'binary_data_size': send the tensor one way"
            )
        if not has_header and size:
            raise ServingError(
                "INVALID_ARGUMENT",
                "must specify valid 'Infer-Header-Content-Length' in request header and 'binary_data_size' when "
                "passing inputs in binary data format",
            )
        if size > len(binary):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"unexpected size for input '{name}', expecting {size} bytes but the body has {len(binary)} left",
            )
        return InferInput(name, datatype, shape, tensor_from_bytes(binary[:size], datatype, shape, name)), size
    if "data" not in item:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"expecting one of 'data', 'binary_data_size' in 'parameters' for input '{name}'",
        )
    values = _flatten(item["data"])
    value = tensor_from_values(values, datatype, shape, name, content_type(parameters, default_type))
    return InferInput(name, datatype, shape, value), 0


def _parse_output(item: Any) -> RequestedOutput:
    item = _object(item, "outputs")
    name = item.get("name")
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'name' of a requested output")
    parameters = _object(item.get("parameters", {}), "parameters")
    classification = parameters.get("classification", 0)
    if not isinstance(classification, int) or isinstance(classification, bool) or classification < 0:
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'classification'")
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise ServingError("INVALID_ARGUMENT", "Unable to parse 'binary_data'")
    return RequestedOutput(name, classification, binary)


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise ServingError("INVALID_ARGUMENT", f"Unable to parse '{what}': expected an object")
    return value


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise ServingError("INVALID_ARGUMENT", f"Unable to parse '{what}': expected an array")
    return value


def _flatten(data: Any) -> list:
    """OIP allows ``data`` flat or nested in row-major order."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


# ---------------------------------------------------------------- responses


def encode_infer_response(result: InferResult, binary_output: bool) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary outputs follow it (None: all JSON)."""
    chunks: list[bytes] = []
    outputs = []
    for tensor in result.outputs:
        requested = tensor.requested
        binary = requested.binary if requested is not None and requested.binary is not None else binary_output
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if binary:
            data = serialize_bytes(tensor.value) if tensor.datatype == "BYTES" else raw_bytes(tensor.value)
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            _json_data(tensor, entry)
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        document["id"] = result.id
    document["outputs"] = outputs
    header = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _json_data(tensor: OutputTensor, entry: dict[str, Any]) -> None:
    value = tensor.value.reshape(-1)
    if tensor.datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in value]
        try:
            entry["data"] = [v.decode("utf-8") for v in items]
        except UnicodeDecodeError:  # not text: base64, saying so as MLServer's codec does
            entry["parameters"] = {"content_type": BASE64}
            entry["data"] = [_b64(v) for v in items]
    elif tensor.datatype == "BF16":
        entry["data"] = value.astype(np.float32).tolist()
    else:
        entry["data"] = value.tolist()


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
