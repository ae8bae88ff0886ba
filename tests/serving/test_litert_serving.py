"""``imgclf serve --prefer-tflite-model`` (issue 24): versions holding ``model.tflite`` are answered by
the LiteRT interpreter behind TF Serving's REST and gRPC contract, checked with the official
``tensorflow-serving-api`` stubs on loopback; a broken ``.tflite`` never takes traffic.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from imgclf import api
from imgclf.contract import (
    EXAMPLE_IMAGE_FEATURE,
    OUTPUT_EMBEDDING_PROJECTION,
    TFLITE_FILE,
    read_model_card,
    write_manifest,
)
from tests.serving.conftest import running_server


def _files(version, count: int = 6) -> list[str]:
    lines = (version.parents[2] / "subset.csv").read_text().splitlines()[1:]
    val = [line.split(",")[0] for line in lines if line.endswith(",val")]
    return val[: count // 2] + val[-(count // 2) :]


def test_prefer_tflite_model_answers_official_tf_serving_clients(litert_export):
    files = _files(litert_export)
    images = [Path(path).read_bytes() for path in files]
    offline = api.load(litert_export, tflite="int8").predict(images)  # model.tflite is the int8 variant
    offline_scores = np.array([[p.scores[c] for c in ("cats", "dogs")] for p in offline])
    with running_server(
        model_name="pets", model_base_path=litert_export.parent, prefer_tflite_model=True, enable_batching=True
    ) as server:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "pets"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
        response = stub.Predict(request, timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), offline_scores, atol=1e-6)
        assert [v.decode() for v in tf.make_ndarray(response.outputs["labels"])] == [p.label for p in offline]
        assert OUTPUT_EMBEDDING_PROJECTION not in response.outputs and "input_statistics" in response.outputs

        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = "pets", "classify"
        for image in images[:2]:
            classify.input.example_list.examples.add().features.feature[EXAMPLE_IMAGE_FEATURE].bytes_list.value.append(
                image
            )
        result = stub.Classify(classify, timeout=30).result
        assert [[c.label for c in row.classes] for row in result.classifications] == [["cats", "dogs"]] * 2
        np.testing.assert_allclose([[c.score for c in row.classes] for row in result.classifications],
                                   offline_scores[:2], atol=1e-6)  # fmt: skip

        body = {"instances": [{"b64": base64.b64encode(image).decode()} for image in images]}
        rest = server.rest.post("/v1/models/pets:predict", json=body).json()
        np.testing.assert_allclose([p["scores"] for p in rest["predictions"]], offline_scores, atol=1e-6)
        metadata = server.rest.get("/v1/models/pets/metadata").json()["metadata"]["signature_def"]["signature_def"]
        assert set(metadata) == {"serving_default", "classify"}
        assert OUTPUT_EMBEDDING_PROJECTION not in metadata["serving_default"]["outputs"]
        assert server.metric(":tensorflow:serving:runtime_latency_count", runtime="TFLite") >= 3


def test_a_broken_tflite_leaves_the_savedmodel_serving(litert_export, tmp_path):
    base = tmp_path / "pets"
    shutil.copytree(litert_export, base / "1")
    (base / "1" / TFLITE_FILE).write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    write_manifest(base / "1")  # whole by its manifest: only the interpreter can tell it is broken
    images = [Path(path).read_bytes() for path in _files(litert_export, 2)]
    saved = api.load(litert_export).predict(images)
    with running_server(model_name="pets", model_base_path=base, prefer_tflite_model=True) as server:
        status = server.rest.get("/v1/models/pets").json()["model_version_status"][0]
        assert status["state"] == "AVAILABLE" and status["status"]["error_code"] == "OK"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "pets"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images))
        response = prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(request, timeout=30)
        assert OUTPUT_EMBEDDING_PROJECTION in response.outputs  # the SavedModel answered
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["scores"]),
            [[p.scores[c] for c in ("cats", "dogs")] for p in saved],
            atol=1e-5,
        )
        assert server.metric(":tensorflow:serving:runtime_latency_count", runtime="TFLite") == 0
    assert read_model_card(base / "1")["litert"]["model_tflite"] == "int8"
