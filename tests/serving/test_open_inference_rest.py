"""The Open Inference Protocol (KServe v2) over REST, called through Triton's official ``tritonclient.http``."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers import config_text, copy_version
from tests.serving.conftest import running_server


@pytest.fixture(scope="module")
def client(toy_server):
    with triton.InferenceServerClient(f"127.0.0.1:{toy_server.server.rest_port}", network_timeout=30) as client:
        yield client


def tensor(name: str, value: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    item = triton.InferInput(name, list(value.shape), datatype)
    item.set_data_from_numpy(value, binary_data=binary)
    return item


def refused(call) -> InferenceServerException:  # type: ignore[no-untyped-def]
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("toy") and client.is_model_ready("toy", "1")
    assert not client.is_model_ready("toy", "9") and not client.is_model_ready("nope")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "imgclf"
    assert {"classification", "binary_tensor_data"} <= set(metadata["extensions"])


def test_model_metadata_has_oip_datatypes_and_shapes(client):
    for version in ("", "1"):
        metadata = client.get_model_metadata("toy", version)
        assert metadata == {
            "name": "toy",
            "versions": ["1"],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        }


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_json_and_binary_tensors_both_ways(client, binary_in, binary_out):
    x = np.array([1.0, 2.0, -4.0], np.float32)
    result = client.infer(
        "toy",
        [tensor("x", x, "FP32", binary_in)],
        outputs=[triton.InferRequestedOutput("y", binary_data=binary_out)],
        request_id="r-1",
    )
    np.testing.assert_allclose(result.as_numpy("y"), 0.5 * x + 2)
    response = result.get_response()
    assert response["model_name"] == "toy" and response["model_version"] == "1" and response["id"] == "r-1"
    assert response["outputs"][0]["shape"] == [3] and response["outputs"][0]["datatype"] == "FP32"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) == binary_out


def test_other_signatures_strings_and_integers(client):
    """``parameters.signature_name`` picks a signature; BYTES travel as strings (JSON) or length-prefixed."""
    text = np.array([b"hello", b"", "h\u00e9".encode()], dtype=object)
    for binary in (True, False):
        result = client.infer("toy", [tensor("text", text, "BYTES", binary)], parameters={"signature_name": "strings"})
        np.testing.assert_array_equal(result.as_numpy("length"), [5, 0, 3])
        assert result.as_numpy("length").dtype == np.int32
        assert list(result.as_numpy("echo_bytes")) == list(text)
    a, b = np.array([1.5, 2.5], np.float32), np.array([3, 4], np.int64)
    result = client.infer(
        "toy", [tensor("a", a, "FP32"), tensor("b", b, "INT64", binary=False)], parameters={"signature_name": "multi"}
    )
    np.testing.assert_allclose(result.as_numpy("sum"), [4.5, 6.5])
    np.testing.assert_array_equal(result.as_numpy("doubled"), [6, 8])


def test_classification_extension_top_k(client):
    x = np.array([1.0, 2.0], np.float32)
    result = client.infer(
        "toy",
        [tensor("a", x, "FP32"), tensor("b", np.array([5, 1], np.int64), "INT64")],
        outputs=[triton.InferRequestedOutput("doubled", class_count=1)],
        parameters={"signature_name": "multi"},
    )
    # each row of a [batch] output has one class: its value at index 0 (an integer prints as it is)
    assert result.as_numpy("doubled").tolist() == [[b"10:0"], [b"2:0"]]


def test_errors_as_triton_returns_them(client):
    x = tensor("x", np.array([1.0], np.float32), "FP32")
    unknown = refused(lambda: client.infer("nope", [x]))
    assert unknown.status() == "400" and unknown.message() == "Request for unknown model: 'nope' is not found"
    version = refused(lambda: client.infer("toy", [x], model_version="9"))
    assert version.status() == "404" and version.message() == "Request for unknown model: 'toy' version 9 is not found"
    wrong = refused(lambda: client.infer("toy", [tensor("x", np.array([1.0]), "FP64")]))
    assert wrong.status() == "400"
    assert wrong.message() == (
        "[request id: <id_unknown>] inference input 'x' data-type is 'FP64', but model 'toy' expects 'FP32'"
    )
    missing = refused(lambda: client.infer("toy", [], request_id="m1"))
    assert missing.status() == "400"
    assert missing.message() == (
        "[request id: m1] expected 1 inputs but got 0 inputs for model 'toy'. Got input(s) [], "
        "but missing required input(s) ['x']. Please provide all required input(s)."
    )
    extra = refused(lambda: client.infer("toy", [x, tensor("z", np.array([1.0], np.float32), "FP32")]))
    assert extra.message() == "unexpected inference input 'z' for model 'toy'"
    output = refused(lambda: client.infer("toy", [x], outputs=[triton.InferRequestedOutput("nope")]))
    assert output.message() == "unexpected inference output 'nope' for model 'toy'"
    shape = refused(lambda: client.infer("toy", [tensor("x", np.ones((2, 2), np.float32), "FP32")]))
    assert "unexpected shape for input 'x' for model 'toy'. Expected [-1], got [2,2]" in shape.message()
    label = refused(lambda: client.get_model_metadata("toy", "stable"))
    assert label.status() == "400" and "failed to get model version from specified version string" in label.message()


def test_wire_format_headers_and_unknown_paths(toy_server):
    rest = toy_server.rest
    header = json.dumps(
        {
            "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + np.array([2.0, 4.0], np.float32).tobytes()
    answer = rest.post(
        "/v2/models/toy/versions/1/infer", content=body, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    document = json.loads(answer.content[:length])
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_allclose(np.frombuffer(answer.content[length:], np.float32), [3.0, 4.0])
    # nested JSON data in row-major order; plain JSON answer
    nested = rest.post(
        "/v2/models/toy/infer", json={"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [3]]}]}
    )
    assert nested.headers["content-type"] == "application/json"
    assert nested.json()["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2], "data": [2.5, 3.5]}]
    broken = rest.post("/v2/models/toy/infer", content=b"{not json")
    assert broken.status_code == 400 and broken.json()["error"].startswith("failed to parse the request JSON buffer")
    short = rest.post("/v2/models/toy/infer", content=body, headers={"Inference-Header-Content-Length": "999"})
    assert short.status_code == 400 and "inference header size should be in range" in short.json()["error"]
    assert rest.get("/v2/nothing/here").status_code == 404
    assert rest.get("/v2/health/live").status_code == 200


def test_infer_counts_in_tf_serving_series(toy_server, client):
    before = toy_server.metric(":tensorflow:serving:request_count", model_name="toy", status="OK")
    latency = toy_server.metric(":tensorflow:serving:request_latency_count", model_name="toy", API="ModelInfer")
    client.infer("toy", [tensor("x", np.array([1.0], np.float32), "FP32")])
    toy_server.rest.post("/v1/models/toy:predict", json={"instances": [1.0]})
    assert toy_server.metric(":tensorflow:serving:request_count", model_name="toy", status="OK") == before + 2
    assert (
        toy_server.metric(":tensorflow:serving:request_latency_count", model_name="toy", API="ModelInfer")
        == latency + 1
    )
    refused(lambda: client.infer("toy", [tensor("x", np.array([1.0]), "FP64")]))
    assert toy_server.metric(":tensorflow:serving:request_count", model_name="toy", status="INVALID_ARGUMENT") >= 1


def test_version_labels_and_policy_apply(tmp_path, toy_model_v1, toy_model_v2):
    """A version label works where OIP takes a version; the version policy decides what serves."""
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    config = tmp_path / "models.config"
    config.write_text(config_text(base, labels={"stable": 1}))
    with (
        running_server(model_config_file=config, file_system_poll_wait_seconds=0) as server,
        triton.InferenceServerClient(f"127.0.0.1:{server.server.rest_port}") as client,
    ):
        x = tensor("x", np.array([1.0], np.float32), "FP32")
        assert client.get_model_metadata("toy")["versions"] == ["1", "2"]
        assert client.infer("toy", [x]).get_response()["model_version"] == "2"  # the newest by default
        stable = client.infer("toy", [x], model_version="stable")
        assert stable.get_response()["model_version"] == "1" and stable.as_numpy("y").tolist() == [2.5]
        assert client.is_model_ready("toy", "stable")


@pytest.mark.shared_data
def test_real_jpegs_json_binary_and_classification_match_tf_serving(cats_dogs_registry, photos):
    """The same scores over OIP (binary and JSON base64) as over TF Serving's REST and gRPC Predict."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    images = np.array([data for _, data in photos], dtype=object)
    with (
        running_server(model_name="cats_dogs", model_base_path=cats_dogs_registry / "cats_dogs") as server,
        triton.InferenceServerClient(f"127.0.0.1:{server.server.rest_port}") as client,
    ):
        binary = client.infer("cats_dogs", [tensor("image_bytes", images, "BYTES")])
        as_text = np.array([base64.b64encode(i) for i in images], dtype=object)
        json_in = client.infer(
            "cats_dogs",
            [tensor("image_bytes", as_text, "BYTES", binary=False)],
            outputs=[triton.InferRequestedOutput("scores", binary_data=False), triton.InferRequestedOutput("labels")],
            parameters={"content_type": "base64"},
        )
        v1 = server.rest.post(
            "/v1/models/cats_dogs:predict",
            json={"instances": [{"b64": base64.b64encode(i).decode()} for i in images]},
        ).json()["predictions"]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cats_dogs"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(images)))
        with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
            predicted = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        grpc_scores = tf.make_ndarray(predicted.outputs["scores"])
        scores = binary.as_numpy("scores")
        np.testing.assert_array_equal(scores, grpc_scores)
        np.testing.assert_array_equal(json_in.as_numpy("scores"), scores)
        np.testing.assert_allclose(scores, [row["scores"] for row in v1], rtol=1e-6)
        assert [label.decode() for label in json_in.as_numpy("labels")] == [row["labels"] for row in v1]
        metadata = client.get_model_metadata("cats_dogs")
        assert {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
        assert {"name": "scores", "datatype": "FP32", "shape": [-1, 2]} in metadata["outputs"]

        top = client.infer(
            "cats_dogs",
            [tensor("image_bytes", images, "BYTES")],
            outputs=[triton.InferRequestedOutput("scores", class_count=2)],
        ).as_numpy("scores")
        assert top.shape == (len(images), 2)
        for row, classes in zip(scores, top, strict=True):
            best = int(np.argmax(row))
            score, index, label = classes[0].decode().split(":")
            assert (int(index), label) == (best, ["cats", "dogs"][best])
            assert score == f"{row[best]:f}"
            assert float(classes[1].decode().split(":")[0]) <= float(score)


def test_length_prefixed_bytes_must_add_up(toy_server):
    header = json.dumps(
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}],
         "parameters": {"signature_name": "strings"}}
    ).encode()  # fmt: skip
    data = struct.pack("<I", 5) + b"hello"  # one element where the shape says two
    answer = toy_server.rest.post(
        "/v2/models/toy/infer", content=header + data, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert answer.status_code == 400 and "unexpected number of string elements" in answer.json()["error"]
