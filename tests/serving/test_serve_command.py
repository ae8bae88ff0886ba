"""``imgclf serve`` as users run it: a separate process, an imgclf export, real image bytes, SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from imgclf.export.inference import ExportedModel
from imgclf.registry.publish import export_run
from tests.helpers import free_port

IMGCLF = [sys.executable, "-m", "imgclf"]


@pytest.fixture(scope="module")
def registry(shapes_run, tmp_path_factory) -> Path:
    registry = tmp_path_factory.mktemp("registry")
    export_run(shapes_run.path, registry, "shapes")
    return registry


@pytest.fixture(scope="module")
def serve_process(registry):
    rest, grpc_port = free_port(), free_port()
    command = [
        *IMGCLF, "serve", "--model-name", "shapes", "--model-base-path", str(registry / "shapes"),
        "--rest-port", str(rest), "--grpc-port", str(grpc_port), "--host", "127.0.0.1", "--enable-batching",
        "--shutdown-grace-seconds", "10",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{rest}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"imgclf serve exited: {process.stderr.read()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("imgclf serve did not become ready")
    yield process, url, f"127.0.0.1:{grpc_port}"
    if process.poll() is None:
        process.kill()
        process.wait()


def sample_images(shapes_dir: Path, count: int = 4) -> list[Path]:
    return sorted(p for p in shapes_dir.rglob("*") if p.is_file())[:count]


def test_serve_says_where_it_listens(serve_process):
    process, url, target = serve_process
    line = process.stdout.readline()
    assert f"REST {url}/v1/models/NAME" in line and f"gRPC {target}" in line, line


def test_served_scores_equal_offline_scores_over_rest_and_grpc(serve_process, registry, shapes_dir):
    _, url, target = serve_process
    files = sample_images(shapes_dir)
    offline = ExportedModel.load(registry / "shapes").predict_bytes([f.read_bytes() for f in files])
    encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]

    bare = httpx.post(url + "/v1/models/shapes:predict", json={"instances": [{"b64": e} for e in encoded]}).json()
    named = httpx.post(
        url + "/v1/models/shapes:predict", json={"instances": [{"image_bytes": {"b64": e}} for e in encoded]}
    ).json()
    assert bare == named
    scores = np.array([p["scores"] for p in bare["predictions"]])
    np.testing.assert_allclose(scores, offline["scores"], atol=1e-5)
    assert [p["labels"] for p in bare["predictions"]] == [v.decode() for v in offline["labels"]]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([f.read_bytes() for f in files]))
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), offline["scores"], atol=1e-5)


def test_bad_image_bytes_are_a_400_and_the_server_stays_up(serve_process, shapes_dir):
    _, url, _ = serve_process
    bad = httpx.post(
        url + "/v1/models/shapes:predict", json={"instances": [{"b64": base64.b64encode(b"nope").decode()}]}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]
    good = sample_images(shapes_dir, 1)[0].read_bytes()
    ok = httpx.post(url + "/v1/models/shapes:predict", json={"instances": [{"b64": base64.b64encode(good).decode()}]})
    assert ok.status_code == 200


def test_warmup_ran_before_the_version_became_available(serve_process):
    _, url, _ = serve_process
    metrics = httpx.get(url + "/monitoring/prometheus/metrics").text
    warmups = [
        line for line in metrics.splitlines() if line.startswith(":tensorflow:serving:model_warmup_latency_count")
    ]
    assert warmups and 'status="OK"' in warmups[0] and float(warmups[0].rsplit(" ", 1)[1]) >= 1


def test_sigterm_finishes_the_request_in_flight_then_exits(serve_process, shapes_dir):
    process, url, _ = serve_process
    image = base64.b64encode(sample_images(shapes_dir, 1)[0].read_bytes()).decode()
    body = json.dumps({"instances": [{"b64": image}]}).encode()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "POST /v1/models/shapes:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # the request is half-sent: in flight
        time.sleep(0.5)
        sock.sendall(body[10:])
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b'"predictions"' in response
    assert process.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["serve", "--rest-port", "0"], "give --model-base-path"),
        (["serve", "--model-config-file", "/nonexistent/models.config"], "cannot read /nonexistent/models.config"),
        (["serve", "--model-base-path", "/tmp", "--batching-parameters-file", os.devnull], "needs --enable-batching"),
    ],
)
def test_bad_options_print_one_error_line(arguments, message):
    result = subprocess.run([*IMGCLF, *arguments], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
