"""TF Serving's Classify API on a real imgclf export (issue 19 item 11).

Every export has a ``classify`` signature (method ``tensorflow/serving/classify``): serialized
tf.Examples in (``inputs``, the encoded image under the feature ``image/encoded``), ``classes``
(string [N, classes]) and ``scores`` (float [N, classes]) out, with serving_default's
preprocessing inside. The literal names below are the public API clients write, so the tests
spell them out instead of reading them from ``imgclf.contract``.
"""

from __future__ import annotations

import base64
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from imgclf.contract import check_export, read_labels
from imgclf.errors import ServingError
from imgclf.serving.predictor import classification_result
from tests.serving.conftest import running_server

SERVING_DEFAULT_OUTPUTS = {"scores", "class_ids", "labels", "embedding_projection", "input_statistics"}


@pytest.fixture(scope="module")
def version_dir(cats_dogs_registry):
    return cats_dogs_registry / "cats_dogs" / "1"


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("classify_base") / "cats_dogs"
    base.mkdir()
    shutil.copytree(version_dir, base / "1")
    with running_server(model_name="cats_dogs", model_base_path=base) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel)


def image_example(data: bytes) -> example_pb2.Example:
    example = example_pb2.Example()
    example.features.feature["image/encoded"].bytes_list.value.append(data)
    return example


def classify_request(images: list[bytes], signature: str = "classify") -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "cats_dogs"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(image_example(data) for data in images)
    return request


def predicted_scores(stub, images: list[bytes]) -> np.ndarray:
    """serving_default's scores for ``images``, through the official Predict client."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cats_dogs"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["scores"])


def test_the_export_has_a_classification_signature_and_a_verified_manifest(version_dir):
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = model.meta_graphs
    signatures = meta_graph.signature_def
    classify = signatures["classify"]
    assert classify.method_name == "tensorflow/serving/classify"
    assert set(classify.inputs) == {"inputs"} and classify.inputs["inputs"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in classify.inputs["inputs"].tensor_shape.dim] == [-1]
    assert set(classify.outputs) == {"classes", "scores"}
    assert classify.outputs["classes"].dtype == tf.string.as_datatype_enum
    assert classify.outputs["scores"].dtype == tf.float32.as_datatype_enum
    for output in ("classes", "scores"):
        assert [d.size for d in classify.outputs[output].tensor_shape.dim] == [-1, 2]
    default = signatures["serving_default"]  # unchanged: the gateway and TF Serving clients use it
    assert default.method_name == "tensorflow/serving/predict"
    assert set(default.inputs) == {"image_bytes"} and set(default.outputs) == SERVING_DEFAULT_OUTPUTS
    # The method name is rewritten before the manifest is written, so the version still verifies.
    assert check_export(version_dir).complete and check_export(version_dir).verified
    # ... and the fingerprint TensorFlow writes beside saved_model.pb describes the rewritten file.
    written = tf.saved_model.experimental.read_fingerprint(str(version_dir))
    fresh = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(version_dir)))
    assert written.saved_model_checksum == fresh.saved_model_checksum


def test_grpc_classify_matches_predict_on_serving_default(server, stub, photos, version_dir):
    images = [data for _, data in photos[:3]] + [photos[-1][1]]  # cats and a dog
    response = stub.Classify(classify_request(images), timeout=30)
    assert response.model_spec.name == "cats_dogs"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "classify"
    labels = read_labels(version_dir)
    assert labels == ["cats", "dogs"]
    expected = predicted_scores(stub, images)
    assert len(response.result.classifications) == len(images)
    for row, classifications in enumerate(response.result.classifications):
        assert [c.label for c in classifications.classes] == labels
        np.testing.assert_allclose([c.score for c in classifications.classes], expected[row], atol=1e-5)
    assert server.metric(":tensorflow:serving:request_count", model_name="cats_dogs", status="OK") >= 2


def test_rest_classify_answers_label_score_pairs(server, stub, photos):
    images = [photos[0][1], photos[-1][1]]
    body = {
        "signature_name": "classify",
        "examples": [{"image/encoded": {"b64": base64.b64encode(data).decode()}} for data in images],
    }
    response = server.rest.post("/v1/models/cats_dogs:classify", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = predicted_scores(stub, images)
    assert len(results) == 2
    for row, pairs in enumerate(results):
        assert [label for label, _ in pairs] == ["cats", "dogs"]
        np.testing.assert_allclose([score for _, score in pairs], expected[row], atol=1e-5)
    by_version = server.rest.post("/v1/models/cats_dogs/versions/1:classify", json=body)
    assert by_version.json() == response.json()


def test_multi_inference_runs_the_classification_signature(stub, photos):
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add()
    task.model_spec.name = "cats_dogs"
    task.model_spec.signature_name = "classify"
    task.method_name = "tensorflow/serving/classify"
    request.input.example_list.examples.append(image_example(photos[0][1]))
    (result,) = stub.MultiInference(request, timeout=30).results
    classes = result.classification_result.classifications[0].classes
    assert [c.label for c in classes] == ["cats", "dogs"]
    np.testing.assert_allclose([c.score for c in classes], predicted_scores(stub, [photos[0][1]])[0], atol=1e-5)


def test_classify_without_a_signature_name_is_tf_servings_error(server, stub, photos):
    """TF Serving classifies with serving_default when no signature is named; ours is a predict
    signature with five outputs, so clients must name ``classify`` (as the README says)."""
    message = "Expected one or two output Tensors, found 5"
    body = {"examples": [{"image/encoded": {"b64": base64.b64encode(photos[0][1]).decode()}}]}
    response = server.rest.post("/v1/models/cats_dogs:classify", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    with pytest.raises(grpc.RpcError) as caught:
        stub.Classify(classify_request([photos[0][1]], signature=""), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


def test_classify_errors_are_tf_servings(server, stub, photos):
    with pytest.raises(grpc.RpcError) as caught:  # GetClassificationSignatureDef's message
        stub.Classify(classify_request([photos[0][1]], signature="nope"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "No signature was found with the name: nope"
    missing = server.rest.post(
        "/v1/models/cats_dogs:classify", json={"signature_name": "classify", "examples": [{"image": "x"}]}
    )
    assert missing.status_code == 400
    assert "image/encoded" in missing.json()["error"]
    broken = server.rest.post(
        "/v1/models/cats_dogs:classify",
        json={"signature_name": "classify", "examples": [{"image/encoded": {"b64": "bm90IGFuIGltYWdl"}}]},
    )
    assert broken.status_code == 400  # "not an image": the decode error, as on serving_default


def test_metadata_lists_the_classification_signature(server, stub):
    document = server.rest.get("/v1/models/cats_dogs/metadata").json()
    signatures = document["metadata"]["signature_def"]["signature_def"]
    classify = signatures["classify"]
    assert classify["method_name"] == "tensorflow/serving/classify"
    assert classify["inputs"]["inputs"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in classify["inputs"]["inputs"]["tensor_shape"]["dim"]] == ["-1"]
    assert {alias: info["dtype"] for alias, info in classify["outputs"].items()} == {
        "classes": "DT_STRING",
        "scores": "DT_FLOAT",
    }
    assert [d["size"] for d in classify["outputs"]["scores"]["tensor_shape"]["dim"]] == ["-1", "2"]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "cats_dogs"
    response = stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["classify"].method_name == "tensorflow/serving/classify"
    assert set(signature_map.signature_def["classify"].outputs) == {"classes", "scores"}
    assert set(signature_map.signature_def["serving_default"].outputs) == SERVING_DEFAULT_OUTPUTS


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {"classes": np.array(["a", "b"], dtype=object)},
            "Expected Tensor shape: [batch_size num_classes] but got [2]",
        ),
        ({"classes": np.array([[1, 2]])}, "Expected classes Tensor of DT_STRING. Got: DT_INT64"),
        ({"scores": np.array([[0.5, 0.5]])}, "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"),
        ({"scores": np.zeros((2, 2), np.float32)}, "Expected scores output batch size of 1. Got: 2"),
        (
            {"classes": np.array([["a", "b"]], dtype=object), "scores": np.zeros((1, 3), np.float32)},
            "Tensors class and score should match in dim_size(1). Got 2 vs. 3",
        ),
    ],
)
def test_classification_outputs_are_checked_as_tf_serving_does(outputs, message):
    """``PostProcessClassificationResult``: a signature that answers the wrong shapes or types."""
    with pytest.raises(ServingError) as caught:
        classification_result(outputs, 1)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.message == message
