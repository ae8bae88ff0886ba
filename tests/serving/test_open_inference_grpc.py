"""The Open Inference Protocol's gRPC service on the TF Serving gRPC port, through Triton's ``tritonclient.grpc``."""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.helpers import config_text, copy_version
from tests.serving.conftest import running_server


@pytest.fixture(scope="module")
def client(toy_server):
    with triton.InferenceServerClient(f"127.0.0.1:{toy_server.server.grpc_port}") as client:
        yield client


def tensor(name: str, value: np.ndarray, datatype: str) -> triton.InferInput:
    return triton.InferInput(name, list(value.shape), datatype).set_data_from_numpy(value)


def refused(call) -> InferenceServerException:  # type: ignore[no-untyped-def]
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_and_metadata_on_the_tf_serving_port(client, toy_server):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("toy") and client.is_model_ready("toy", "1")
    assert refused(lambda: client.is_model_ready("toy", "9")).status() == "StatusCode.NOT_FOUND"
    assert refused(lambda: client.is_model_ready("nope")).status() == "StatusCode.INVALID_ARGUMENT"
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "imgclf" and "classification" in server["extensions"]
    metadata = client.get_model_metadata("toy", as_json=True)
    assert metadata == {
        "name": "toy",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1"]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": ["-1"]}],
    }
    health = health_pb2_grpc.HealthStub(toy_server.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_infer_raw_contents_strings_and_classification(client):
    x = np.array([1.0, 2.0, -4.0], np.float32)
    result = client.infer("toy", [tensor("x", x, "FP32")], request_id="g-1")
    np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("toy", "1", "g-1")
    text = np.array([b"hello", b"\xff\x00bytes"], dtype=object)
    strings = client.infer("toy", [tensor("text", text, "BYTES")], parameters={"signature_name": "strings"})
    assert list(strings.as_numpy("echo_bytes")) == list(text)
    np.testing.assert_array_equal(strings.as_numpy("length"), [5, 7])
    top = client.infer(
        "toy",
        [tensor("a", x[:2], "FP32"), tensor("b", np.array([5, 1], np.int64), "INT64")],
        outputs=[triton.InferRequestedOutput("doubled", class_count=3)],
        parameters={"signature_name": "multi"},
    )
    assert top.as_numpy("doubled").tolist() == [[b"10:0"], [b"2:0"]]


def test_typed_contents_without_raw_bytes(toy_server):
    """Clients that fill ``contents`` (KServe's, MLServer's) instead of ``raw_input_contents``."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(toy_server.channel)
    request = service_pb2.ModelInferRequest(model_name="toy")
    request.parameters["signature_name"].string_param = "multi"
    a = request.inputs.add(name="a", datatype="FP32", shape=[2])
    a.contents.fp32_contents.extend([1.5, 2.5])
    b = request.inputs.add(name="b", datatype="INT64", shape=[2])
    b.contents.int64_contents.extend([3, 4])
    response = stub.ModelInfer(request, timeout=10)
    outputs = {o.name: i for i, o in enumerate(response.outputs)}
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[outputs["sum"]], np.float32), [4.5, 6.5])
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[outputs["doubled"]], np.int64), [6, 8])
    text = service_pb2.ModelInferRequest(model_name="toy")
    text.parameters["signature_name"].string_param = "strings"
    text.parameters["content_type"].string_param = "base64"
    item = text.inputs.add(name="text", datatype="BYTES", shape=[1])
    item.contents.bytes_contents.append(base64.b64encode(b"four"))
    answer = stub.ModelInfer(text, timeout=10)
    lengths = {o.name: i for i, o in enumerate(answer.outputs)}["length"]
    assert np.frombuffer(answer.raw_output_contents[lengths], np.int32).tolist() == [4]


def test_errors_as_triton_returns_them(client, toy_server):
    x = tensor("x", np.array([1.0], np.float32), "FP32")
    unknown = refused(lambda: client.infer("nope", [x]))
    assert unknown.status() == "StatusCode.INVALID_ARGUMENT"
    assert unknown.message() == "Request for unknown model: 'nope' is not found"
    version = refused(lambda: client.infer("toy", [x], model_version="9"))
    assert version.status() == "StatusCode.NOT_FOUND"
    assert version.message() == "Request for unknown model: 'toy' version 9 is not found"
    wrong = refused(lambda: client.infer("toy", [tensor("x", np.array([1.0]), "FP64")]))
    assert wrong.status() == "StatusCode.INVALID_ARGUMENT"
    assert wrong.message() == (
        "[request id: <id_unknown>] inference input 'x' data-type is 'FP64', but model 'toy' expects 'FP32'"
    )
    missing = refused(lambda: client.infer("toy", [], request_id="m2"))
    assert missing.message() == (
        "[request id: m2] expected 1 inputs but got 0 inputs for model 'toy'. Got input(s) [], "
        "but missing required input(s) ['x']. Please provide all required input(s)."
    )
    stub = service_pb2_grpc.GRPCInferenceServiceStub(toy_server.channel)
    with pytest.raises(grpc.RpcError) as unimplemented:
        stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_both_protocols_share_the_port_versions_and_metrics(tmp_path, toy_model_v1, toy_model_v2):
    """TF Serving's Predict and OIP's ModelInfer on one port: the same labels, versions and series."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    config = tmp_path / "models.config"
    config.write_text(config_text(base, labels={"stable": 1}))
    with (
        running_server(model_config_file=config, file_system_poll_wait_seconds=0, enable_batching=True) as server,
        triton.InferenceServerClient(f"127.0.0.1:{server.server.grpc_port}") as client,
    ):
        x = np.array([1.0, 3.0], np.float32)
        stable = client.infer("toy", [tensor("x", x, "FP32")], model_version="stable")
        assert stable.get_response().model_version == "1"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.model_spec.version_label = "stable"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        predicted = prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(request, timeout=10)
        np.testing.assert_array_equal(stable.as_numpy("y"), tf.make_ndarray(predicted.outputs["y"]))
        assert client.infer("toy", [tensor("x", x, "FP32")]).get_response().model_version == "2"
        assert server.metric(":tensorflow:serving:request_count", model_name="toy", status="OK") == 3
        assert server.metric(":tensorflow:serving:request_latency_count", API="ModelInfer", entrypoint="GRPC") == 2
        assert server.metric(":imgclf:serving:batch_size_count", model_name="toy") == 3  # one batching engine


@pytest.mark.shared_data
def test_real_jpegs_score_as_tf_serving_predict(cats_dogs_registry, photos):
    import tensorflow as tf
    import tritonclient.http as triton_http
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    images = np.array([data for _, data in photos], dtype=object)
    with (
        running_server(model_name="cats_dogs", model_base_path=cats_dogs_registry / "cats_dogs") as server,
        triton.InferenceServerClient(f"127.0.0.1:{server.server.grpc_port}") as client,
        triton_http.InferenceServerClient(f"127.0.0.1:{server.server.rest_port}") as http,
    ):
        result = client.infer(
            "cats_dogs",
            [tensor("image_bytes", images, "BYTES")],
            outputs=[triton.InferRequestedOutput("scores"), triton.InferRequestedOutput("class_ids")],
        )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cats_dogs"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(images)))
        predicted = prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(request, timeout=30)
        np.testing.assert_array_equal(result.as_numpy("scores"), tf.make_ndarray(predicted.outputs["scores"]))
        np.testing.assert_array_equal(result.as_numpy("class_ids"), tf.make_ndarray(predicted.outputs["class_ids"]))
        item = triton_http.InferInput("image_bytes", [len(images)], "BYTES").set_data_from_numpy(images)
        np.testing.assert_array_equal(http.infer("cats_dogs", [item]).as_numpy("scores"), result.as_numpy("scores"))
        top = client.infer(
            "cats_dogs",
            [tensor("image_bytes", images[:2], "BYTES")],
            outputs=[triton.InferRequestedOutput("scores", class_count=1)],
        ).as_numpy("scores")
        best = np.argmax(result.as_numpy("scores")[:2], axis=1)
        assert [row[0].decode().split(":", 1)[1] for row in top] == [f"{i}:{['cats', 'dogs'][i]}" for i in best]
