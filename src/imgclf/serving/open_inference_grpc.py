"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``, on the gRPC port.

The messages and the service come from Triton's ``grpc_service.proto`` as generated and shipped by
the pinned ``tritonclient`` package (``tritonclient.grpc.service_pb2``): a superset of KServe's
``grpc_predict_v2.proto`` with the same package, service, message names and field numbers, so
KServe, MLServer and Triton clients all reach it. Served: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata and ModelInfer; Triton's other RPCs answer UNIMPLEMENTED.

Inputs come in ``raw_input_contents`` (every input, in order) or in the typed ``contents``
fields; outputs always go out in ``raw_output_contents`` (as Triton answers), BYTES elements
length-prefixed. Errors are Triton's gRPC status codes and messages (``open_inference``).
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from imgclf.errors import ServingError
from imgclf.serving.open_inference import (
    API,
    InferInput,
    InferRequest,
    InferResult,
    OpenInference,
    RequestedOutput,
    content_type,
    tensor_from_bytes,
    tensor_from_values,
)
from imgclf.serving.status import grpc_code, grpc_message
from imgclf.serving.tensors import raw_bytes, serialize_bytes

SERVICE_NAME = "inference.GRPCInferenceService"
# Which typed ``contents`` field carries each datatype (FP16 and BF16 travel only raw).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


MAX_WAIT_SECONDS = 24 * 3600.0


def deadline(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the client's deadline; None (wait) when it set none (gRPC says ~forever)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > MAX_WAIT_SECONDS else remaining


def _abort(context: grpc.ServicerContext, error: ServingError):  # type: ignore[no-untyped-def]
    context.abort(grpc_code(error.code), grpc_message(error.message))


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, protocol: OpenInference) -> None:
        self.protocol = protocol
        self.metrics = protocol.metrics

    def ServerLive(self, request, context):  # type: ignore[no-untyped-def]
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # type: ignore[no-untyped-def]
        return service_pb2.ServerReadyResponse(ready=self.protocol.server_ready())

    def ModelReady(self, request, context):  # type: ignore[no-untyped-def]
        try:
            return service_pb2.ModelReadyResponse(ready=self.protocol.model_ready(request.name, request.version))
        except ServingError as error:
            _abort(context, error)

    def ServerMetadata(self, request, context):  # type: ignore[no-untyped-def]
        return service_pb2.ServerMetadataResponse(**self.protocol.server_metadata())

    def ModelMetadata(self, request, context):  # type: ignore[no-untyped-def]
        try:
            metadata = self.protocol.model_metadata(request.name, request.version)
        except ServingError as error:
            _abort(context, error)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensor(**item) for item in metadata["inputs"]],
            outputs=[tensor(**item) for item in metadata["outputs"]],
        )

    def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        name = request.model_name
        code = "OK"
        try:
            _, future = self.protocol.infer(infer_request(request))
            try:
                result = future.result(timeout=deadline(context))
            except FutureTimeout:
                raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
            response = infer_response(result)
        except ServingError as error:
            code = error.code
            self.metrics.request_count.labels(name, code).inc()
            _abort(context, error)
        self.metrics.request_count.labels(name, code).inc()
        self.metrics.request_latency.labels(name, API, "GRPC").observe((time.perf_counter() - started) * 1e6)
        return response


def add_inference_service(protocol: OpenInference, server: grpc.Server) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(protocol), server)


# ---------------------------------------------------------------- messages


def parameters(entries) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A ``map<string, InferParameter>`` as plain values."""
    values = {}
    for key, parameter in entries.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def infer_request(request: service_pb2.ModelInferRequest) -> InferRequest:
    request_parameters = parameters(request.parameters)
    default_type = content_type(request_parameters)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"expected {len(request.inputs)} raw input contents, got {len(raw)}: with raw_input_contents, "
            "every input's data must be in it, in input order",
        )
    inputs = []
    for index, item in enumerate(request.inputs):
        shape = list(item.shape)
        if raw:
            if item.HasField("contents"):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"contents field must not be specified when using raw_input_contents for '{item.name}' "
                    f"for model '{request.model_name}'",
                )
            value = tensor_from_bytes(raw[index], item.datatype, shape, item.name)
        else:
            value = _from_contents(item, shape, content_type(parameters(item.parameters), default_type))
        inputs.append(InferInput(item.name, item.datatype, shape, value))
    outputs = []
    for item in request.outputs:
        classification = parameters(item.parameters).get("classification", 0)
        if not isinstance(classification, int) or isinstance(classification, bool):
            raise ServingError("INVALID_ARGUMENT", f"Unable to parse 'classification' of output '{item.name}'")
        outputs.append(RequestedOutput(item.name, classification))
    return InferRequest(request.model_name, request.model_version, request.id, request_parameters, inputs, outputs)


def _from_contents(item, shape: list[int], encoding: str | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    field = CONTENTS_FIELD.get(item.datatype)
    if field is None:
        if item.datatype in ("FP16", "BF16"):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input '{item.name}' of datatype {item.datatype} must be sent in raw_input_contents",
            )
        raise ServingError("INVALID_ARGUMENT", f"invalid datatype '{item.datatype}' for input '{item.name}'")
    values = list(getattr(item.contents, field))
    return tensor_from_values(values, item.datatype, shape, item.name, encoding)


def infer_response(result: InferResult) -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=result.id
    )
    for tensor in result.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        data = serialize_bytes(tensor.value) if tensor.datatype == "BYTES" else raw_bytes(tensor.value)
        response.raw_output_contents.append(data)
    return response
