"""TF Serving's REST API, with the request shapes from its docs (api_rest.md) and its tests."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest

from imgclf.serving.json_tensors import format_float


def test_status_of_a_model_and_a_version(toy_server):
    status = toy_server.rest.get("/v1/models/toy")
    assert status.status_code == 200
    assert status.headers["content-type"] == "application/json"
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert toy_server.rest.get("/v1/models/toy/versions/1").json()["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/v1/models/nope", 404, "Could not find any versions of model nope"),
        ("/v1/models/toy/versions/7", 404, "Could not find version 7 of model toy"),
        ("/v1/models", 400, "Missing model name in request."),
        ("/v1/models/toy/versions/x", 400, "Malformed request: GET /v1/models/toy/versions/x"),
        ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/toy/versions/7/metadata", 404, "Servable not found for request: Specific(toy, 7)"),
        ("/v1/models/toy/labels/stable/metadata", 400, "Unrecognized servable version label: stable"),
    ],
)
def test_status_and_metadata_errors(toy_server, path, code, message):
    response = toy_server.rest.get(path)
    assert response.status_code == code
    assert response.json() == {"error": message}


def test_metadata_lists_signature_defs_in_tf_serving_shape(toy_server):
    metadata = toy_server.rest.get("/v1/models/toy/metadata").json()
    assert metadata["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "multi", "strings", "classify_x", "regress_x"} <= set(signatures)
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert signatures["classify_x"]["method_name"] == "tensorflow/serving/classify"


def test_predict_row_and_columnar_formats(toy_server):
    rows = toy_server.rest.post("/v1/models/toy:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert rows.status_code == 200
    assert rows.json() == {"predictions": [2.5, 3.0, 4.5]}
    columns = toy_server.rest.post(
        "/v1/models/toy:predict", json={"signature_name": "serving_default", "inputs": [3.0]}
    )
    assert columns.json() == {"outputs": [3.5]}
    by_version = toy_server.rest.post("/v1/models/toy/versions/1:predict", json={"instances": [0]})
    assert by_version.json() == {"predictions": [2.0]}
    assert "2.0" in by_version.text  # whole floats keep their ".0", as TF Serving writes them


def test_predict_with_several_inputs_and_outputs(toy_server):
    rows = toy_server.rest.post(
        "/v1/models/toy:predict", json={"signature_name": "multi", "instances": [{"a": 1.5, "b": 2}, {"a": 0, "b": -1}]}
    )
    assert rows.json() == {"predictions": [{"sum": 3.5, "doubled": 4}, {"sum": -1.0, "doubled": -2}]}
    columns = toy_server.rest.post(
        "/v1/models/toy:predict", json={"signature_name": "multi", "inputs": {"a": [1.0, 2.0], "b": [10, 20]}}
    )
    assert columns.json() == {"outputs": {"sum": [11.0, 22.0], "doubled": [20, 40]}}


def test_binary_strings_in_and_out(toy_server):
    payload = b"\xff\xd8 not utf-8 \x00"
    response = toy_server.rest.post(
        "/v1/models/toy:predict",
        json={"signature_name": "strings", "instances": [{"b64": base64.b64encode(payload).decode()}, "plain"]},
    )
    predictions = response.json()["predictions"]
    assert predictions[0] == {"length": len(payload), "echo_bytes": {"b64": base64.b64encode(payload).decode()}}
    assert predictions[1] == {"length": 5, "echo_bytes": {"b64": base64.b64encode(b"plain").decode()}}


def test_gzip_request_body(toy_server):
    body = gzip.compress(json.dumps({"instances": [4.0]}).encode())
    response = toy_server.rest.post(
        "/v1/models/toy:predict", content=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert response.json() == {"predictions": [4.0]}


def test_classify_and_regress_return_results(toy_server):
    classify = toy_server.rest.post(
        "/v1/models/toy:classify", json={"signature_name": "classify_x", "examples": [{"x": 0.0}, {"x": 2.0}]}
    )
    assert classify.status_code == 200
    results = classify.json()["results"]
    assert [label for label, _ in results[0]] == ["neg", "pos"]
    assert results[0][1][1] == pytest.approx(0.5)
    assert results[1][1][1] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)
    regress = toy_server.rest.post(
        "/v1/models/toy:regress",
        json={"signature_name": "regress_x", "context": {"x": 1.0}, "examples": [{}, {"x": 4.0}]},
    )
    assert regress.json() == {"results": [2.5, 4.0]}  # the context supplies x for the first example


def test_classify_on_a_predict_signature_is_tf_servings_error(toy_server):
    response = toy_server.rest.post("/v1/models/toy:classify", json={"examples": [{"x": 1.0}]})
    assert response.status_code == 400
    assert response.json() == {"error": "No classification inputs found in SignatureDef: serving_default"}


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("/v1/models/nope:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/toy/versions/9:predict", {"instances": [1.0]}, 404, "Specific(toy, 9)"),
        ("/v1/models/toy/labels/canary:predict", {"instances": [1.0]}, 400, "Unrecognized servable version label"),
        (
            "/v1/models/toy:predict",
            {"signature_name": "nope", "instances": [1.0]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        ("/v1/models/toy:predict", {"signature_name": 3, "instances": [1.0]}, 400, "'signature_name' key must be"),
        ("/v1/models/toy:predict", {"instances": [1.0], "inputs": [1.0]}, 400, "expecting only one of"),
        ("/v1/models/toy:predict", {"data": [1.0]}, 400, "Missing 'inputs' or 'instances' key"),
        ("/v1/models/toy:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("/v1/models/toy:predict", {"instances": 1.0}, 400, "to be an list/array"),
        ("/v1/models/toy:predict", {"instances": ["a"]}, 400, "Type: String is not of expected type: float"),
        ("/v1/models/toy:predict", {"instances": [True]}, 400, "is not of expected type: float"),
        ("/v1/models/toy:predict", {"instances": [16777217]}, 400, "to float without loss of precision"),
        ("/v1/models/toy:predict", {"inputs": [[1.0], 2.0]}, 400, "found at incorrect level"),
        ("/v1/models/toy:predict", {"instances": [[1.0], [2.0]]}, 400, "shape"),
        (
            "/v1/models/toy:predict",
            {"signature_name": "multi", "instances": [1.0]},
            400,
            "instances is a plain list, but expecting list of objects",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "multi", "instances": [{"a": 1.0}]},
            400,
            "keys must be equal to: a,b",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "multi", "inputs": {"a": [1.0]}},
            400,
            "Missing named input: b in 'inputs' object.",
        ),
        (
            "/v1/models/toy:predict",
            {"signature_name": "strings", "instances": [{"b64": "%%%"}]},
            400,
            "Unable to base64 decode",
        ),
        ("/v1/models/toy:regress", {"signature_name": "regress_x"}, 400, "key 'examples' is expected"),
        ("/v1/models/toy:predict/x", {"instances": [1.0]}, 400, "Malformed request: POST /v1/models/toy:predict/x"),
    ],
)
def test_predict_errors_match_tf_serving(toy_server, path, body, code, message):
    response = toy_server.rest.post(path, json=body)
    assert response.status_code == code, response.text
    assert message in response.json()["error"]


def test_body_that_is_not_json_is_a_400_and_the_server_stays_up(toy_server):
    broken = toy_server.rest.post("/v1/models/toy:predict", content=b"{not json")
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("JSON Parse error")
    empty = toy_server.rest.post("/v1/models/toy:predict", content=b"")
    assert empty.json() == {"error": "JSON Parse error: The document is empty"}
    assert toy_server.rest.post("/v1/models/toy:predict", json={"instances": [0.0]}).status_code == 200


def test_nan_and_infinity_tokens_are_accepted_and_written(toy_server):
    response = toy_server.rest.post("/v1/models/toy:predict", content=b'{"instances": [NaN, Infinity, -Infinity]}')
    assert response.status_code == 200
    assert response.text.replace(" ", "").replace("\n", "") == '{"predictions":[NaN,Infinity,-Infinity]}'


def test_paths_outside_v1_and_v2_are_404_and_health_endpoints_answer(toy_server):
    assert toy_server.rest.get("/v3/models/toy").status_code == 404
    assert toy_server.rest.get("/v2/models/toy").status_code == 200  # the Open Inference Protocol's metadata
    assert toy_server.rest.get("/healthz").json() == {"status": "alive"}
    ready = toy_server.rest.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["available_versions"] == {"toy": [1]}


def test_metrics_use_tf_serving_names(toy_server):
    toy_server.rest.post("/v1/models/toy:predict", json={"instances": [1.0]})
    toy_server.rest.post("/v1/models/nope:predict", json={"instances": [1.0]})
    page = toy_server.rest.get("/monitoring/prometheus/metrics")
    assert page.status_code == 200
    text = page.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert toy_server.metric(":tensorflow:serving:request_count", model_name="toy", status="OK") >= 1
    assert toy_server.metric(":tensorflow:serving:request_count", model_name="nope", status="NOT_FOUND") >= 1
    assert (
        toy_server.metric(
            ":tensorflow:serving:request_latency_count", model_name="toy", API="predict", entrypoint="REST"
        )
        >= 1
    )
    assert ":tensorflow:serving:runtime_latency_bucket" in text
    assert ":tensorflow:cc:saved_model:load_attempt_count" in text
    assert "_created" not in text and "request_count_total" not in text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.2, "0.2"),  # not 0.20000000298023224
        (42.0, "42.0"),
        (9e6, "9e+06"),
        (3e-05, "3e-05"),
        (0.123456789, "0.123456791"),  # six digits would not round-trip: nine are written
        (-1.5, "-1.5"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_float_formatting_follows_tf_serving(value, text):
    assert format_float(float(np.float32(value))) == text
