"""TF Serving's gRPC services from the official ``tensorflow_serving.apis`` stubs.

``PredictionService`` (Predict, Classify, Regress, MultiInference, GetModelMetadata),
``ModelService`` (GetModelStatus, HandleReloadConfigRequest) and the standard
``grpc.health.v1`` service (names ``""``, ``ModelService`` and ``PredictionService``: SERVING once
every configured model has an AVAILABLE version). Messages of any size are accepted, as TF
Serving does (``SetMaxMessageSize(INT32_MAX)``). The Open Inference Protocol's
``inference.GRPCInferenceService`` (``open_inference_grpc``) shares the server and port.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from imgclf.errors import ServingError
from imgclf.serving.model_info import model_metadata, model_status
from imgclf.serving.open_inference import OpenInference
from imgclf.serving.open_inference_grpc import SERVICE_NAME, add_inference_service, deadline
from imgclf.serving.predictor import ModelAddress, Predictor, serialized_examples
from imgclf.serving.servable import DEFAULT_SIGNATURE
from imgclf.serving.status import grpc_code, grpc_message
from imgclf.serving.tensors import to_numpy, to_tensor_proto

MAX_MESSAGE_BYTES = 2**31 - 1
HEALTH_SERVICES = ("", "ModelService", "PredictionService", SERVICE_NAME)


def address_of(spec) -> ModelAddress:  # type: ignore[no-untyped-def]
    version_choice = spec.WhichOneof("version_choice")
    return ModelAddress(
        spec.name,
        spec.version.value if version_choice == "version" else None,
        spec.version_label if version_choice == "version_label" else None,
    )


def _abort(context: grpc.ServicerContext, error: ServingError):  # type: ignore[no-untyped-def]
    context.abort(grpc_code(error.code), grpc_message(error.message))


def _result(future: Future, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
    try:  # a client without a deadline has "forever" left, which a thread wait cannot take
        return future.result(timeout=deadline(context))
    except FutureTimeout:
        raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.metrics = predictor.metrics

    def _measure(self, api: str, request, context, handler):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        name = request.model_spec.name
        try:
            response = handler(request, context)
        except ServingError as error:
            self.metrics.request_count.labels(name, error.code).inc()
            _abort(context, error)
        self.metrics.request_count.labels(name, "OK").inc()
        self.metrics.request_latency.labels(name, api, "GRPC").observe((time.perf_counter() - started) * 1e6)
        return response

    def Predict(self, request, context):  # type: ignore[no-untyped-def]
        return self._measure("Predict", request, context, self._predict)

    def _predict(self, request, context) -> predict_pb2.PredictResponse:  # type: ignore[no-untyped-def]
        servable = self.predictor.servable(address_of(request.model_spec))
        signature_name = request.model_spec.signature_name
        servable.signature(signature_name)  # FAILED_PRECONDITION for an unknown signature, before decoding
        inputs = {alias: to_numpy(proto) for alias, proto in request.inputs.items()}
        future = self.predictor.predict(servable, signature_name, inputs, tuple(request.output_filter))
        outputs = _result(future, context)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, servable, signature_name)
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_tensor_proto(value))
        return response

    def Classify(self, request, context):  # type: ignore[no-untyped-def]
        handler = partial(
            self._examples, run=self.predictor.classify, response=classification_pb2.ClassificationResponse
        )
        return self._measure("Classify", request, context, handler)

    def Regress(self, request, context):  # type: ignore[no-untyped-def]
        handler = partial(self._examples, run=self.predictor.regress, response=regression_pb2.RegressionResponse)
        return self._measure("Regress", request, context, handler)

    def _examples(self, request, context, run, response):  # type: ignore[no-untyped-def]
        """Classify or Regress: tf.Examples in, a result message out."""
        servable = self.predictor.servable(address_of(request.model_spec))
        signature_name = request.model_spec.signature_name
        message = response(result=_result(run(servable, signature_name, _examples(request.input)), context))
        _fill_spec(message.model_spec, servable, signature_name)
        return message

    def MultiInference(self, request, context):  # type: ignore[no-untyped-def]
        try:
            if not request.tasks:
                raise ServingError("INVALID_ARGUMENT", "MultiInferenceRequest must contain at least one task")
            servable = self.predictor.servable(address_of(request.tasks[0].model_spec))
            results = self.predictor.multi_inference(servable, request.tasks, _examples(request.input))
        except ServingError as error:
            _abort(context, error)
        return inference_pb2.MultiInferenceResponse(results=results)

    def GetModelMetadata(self, request, context):  # type: ignore[no-untyped-def]
        try:
            servable = self.predictor.servable(address_of(request.model_spec))
            return model_metadata(servable, list(request.metadata_field))
        except ServingError as error:
            _abort(context, error)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor, reload_config) -> None:  # type: ignore[no-untyped-def]
        self.manager = predictor.manager
        self.reload_config = reload_config

    def GetModelStatus(self, request, context):  # type: ignore[no-untyped-def]
        address = address_of(request.model_spec)  # a label is ignored, as TF Serving does
        try:
            return model_status(self.manager, address.name, address.version)
        except ServingError as error:
            _abort(context, error)

    def HandleReloadConfigRequest(self, request, context):  # type: ignore[no-untyped-def]
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.reload_config(request.config)
        except ServingError as error:
            response.status.error_code = _code_number(error.code)
            response.status.error_message = error.message
        except Exception as error:  # an invalid config (ConfigError) is the caller's problem
            response.status.error_code = _code_number("INVALID_ARGUMENT")
            response.status.error_message = str(error)
        return response


def _code_number(code: str) -> int:
    return error_codes_pb2.Code.Value(code)


def _examples(request_input) -> np.ndarray:  # type: ignore[no-untyped-def]
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return serialized_examples(list(request_input.example_list.examples), None)
    if kind == "example_list_with_context":
        data = request_input.example_list_with_context
        return serialized_examples(list(data.examples), data.context)
    raise ServingError("INVALID_ARGUMENT", "Input is empty.")


def _fill_spec(spec, servable, signature_name: str) -> None:  # type: ignore[no-untyped-def]
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name or DEFAULT_SIGNATURE


MAX_CONNECTION_AGE_MS = 5 * 60 * 1000


def build_grpc_server(
    predictor: Predictor, reload_config, port: int, host: str = "0.0.0.0", max_workers: int = 8
) -> tuple[grpc.Server, health.HealthServicer, int]:  # type: ignore[no-untyped-def]
    """A started-ready gRPC server (call ``start()``), its health servicer, and the bound port."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        # Clients reconnect every few minutes, re-resolving DNS: replicas added behind a headless
        # Service get traffic from clients balancing round-robin (the gateway's gRPC backend).
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", 30_000),
    ]
    server = grpc.server(ThreadPoolExecutor(max_workers, thread_name_prefix="imgclf-grpc"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor, reload_config), server)
    add_inference_service(OpenInference(predictor), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise ServingError("UNAVAILABLE", f"cannot listen on gRPC port {port}")
    return server, health_servicer, bound


def set_health(health_servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in HEALTH_SERVICES:
        health_servicer.set(service, status)
