"""TF Serving's gRPC services, called through the official ``tensorflow_serving.apis`` stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)


@pytest.fixture(scope="module")
def prediction(toy_server):
    return prediction_service_pb2_grpc.PredictionServiceStub(toy_server.channel)


@pytest.fixture(scope="module")
def models(toy_server):
    return model_service_pb2_grpc.ModelServiceStub(toy_server.channel)


def predict_request(name="toy", signature="", **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def examples(*values: float) -> list[example_pb2.Example]:
    result = []
    for value in values:
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(value)
        result.append(example)
    return result


def test_predict_returns_outputs_and_the_resolved_model_spec(prediction):
    response = prediction.Predict(predict_request(x=np.array([1.0, 2.0], np.float32)), timeout=10)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0])
    assert response.model_spec.name == "toy"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_predict_by_version_and_output_filter(prediction):
    request = predict_request(signature="multi", a=np.array([1.0], np.float32), b=np.array([3], np.int64))
    request.model_spec.version.value = 1
    request.output_filter.append("doubled")
    response = prediction.Predict(request, timeout=10)
    assert list(response.outputs) == ["doubled"]
    assert tf.make_ndarray(response.outputs["doubled"]).tolist() == [6]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            predict_request(name="nope", x=np.array([1.0], np.float32)),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            predict_request(signature="nope", x=np.array([1.0], np.float32)),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            predict_request(signature="multi", a=np.array([1.0], np.float32)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 1!=2 len({a}) != len({a,b}). Sent extra: {}. "
            "Missing but required: {b}.",
        ),
        (
            predict_request(x=np.array(["a"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but string is provided",
        ),
    ],
)
def test_predict_errors(prediction, request_, code, message):
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request_, timeout=10)
    assert caught.value.code() == code
    assert caught.value.details() == message


def test_unknown_output_filter_and_version_label(prediction):
    request = predict_request(x=np.array([1.0], np.float32))
    request.output_filter.append("z")
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request, timeout=10)
    assert caught.value.details().startswith("output tensor alias not found in signature: z")
    labelled = predict_request(x=np.array([1.0], np.float32))
    labelled.model_spec.version_label = "stable"
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(labelled, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Unrecognized servable version label: stable"


def test_large_messages_are_accepted(toy_server):
    values = np.arange(2_000_000, dtype=np.float32)  # 8 MB each way, over gRPC's 4 MiB default
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{toy_server.server.grpc_port}", options=options) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request(x=values), timeout=30
        )
    assert tf.make_ndarray(response.outputs["y"])[-1] == pytest.approx(0.5 * values[-1] + 2)


def test_get_model_metadata(prediction):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "toy"
    response = prediction.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].inputs["x"].dtype == tf.float32.as_datatype_enum
    with pytest.raises(grpc.RpcError) as caught:
        prediction.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "toy"}))
    assert caught.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    with pytest.raises(grpc.RpcError) as caught:
        prediction.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "toy"}, metadata_field=["graph"])
        )
    assert caught.value.details() == "Metadata field graph is not supported"


def test_get_model_status(models):
    response = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"}))
    (status,) = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    with pytest.raises(grpc.RpcError) as caught:
        models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nope"}))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "Could not find any versions of model nope"


def test_classify_regress_and_multi_inference(prediction):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "toy"
    classify.model_spec.signature_name = "classify_x"
    classify.input.example_list.examples.extend(examples(0.0, 3.0))
    result = prediction.Classify(classify, timeout=10).result
    assert [c.label for c in result.classifications[0].classes] == ["neg", "pos"]
    assert result.classifications[1].classes[1].score == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "toy"
    regress.model_spec.signature_name = "regress_x"
    regress.input.example_list.examples.extend(examples(2.0))
    assert [r.value for r in prediction.Regress(regress, timeout=10).result.regressions] == [3.0]

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x", "tensorflow/serving/classify"),
        ("regress_x", "tensorflow/serving/regress"),
    ):
        task = multi.tasks.add()
        task.model_spec.name = "toy"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.extend(examples(2.0))
    results = prediction.MultiInference(multi, timeout=10).results
    assert results[0].classification_result.classifications[0].classes[0].label == "neg"
    assert results[1].regression_result.regressions[0].value == 3.0

    classify.model_spec.signature_name = "multi"  # two inputs: TF Serving's error
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Classify(classify, timeout=10)
    assert caught.value.details() == "Expected one input Tensor."


def test_standard_health_service_reports_serving(toy_server):
    health = health_pb2_grpc.HealthStub(toy_server.channel)
    for service in ("", "ModelService", "PredictionService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_requests_are_counted_with_the_grpc_entrypoint(toy_server, prediction):
    prediction.Predict(predict_request(x=np.array([1.0], np.float32)), timeout=10)
    assert (
        toy_server.metric(
            ":tensorflow:serving:request_latency_count", model_name="toy", API="Predict", entrypoint="GRPC"
        )
        >= 1
    )


def test_predict_without_a_deadline(prediction):
    """A client that sets no timeout has "forever" left; waiting for the batch must not overflow."""
    response = prediction.Predict(predict_request(x=np.array([4.0], np.float32)))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [4.0])
