"""Version management: hot swaps without failed requests, broken versions, policies, labels, reloads."""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from imgclf.serving.manager import aspired_versions, version_directories
from imgclf.serving.options import parse_model_config
from tests.helpers import available, config_text, copy_version
from tests.serving.conftest import running_server, wait_for


def test_swap_under_load_fails_no_request_and_moves_answers(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    with running_server(
        model_name="toy", model_base_path=base, file_system_poll_wait_seconds=0.2, enable_batching=True
    ) as running:
        answers: list[float] = []
        failures: list[str] = []
        stop = threading.Event()

        def client() -> None:
            import httpx

            with httpx.Client(base_url=running.url, timeout=30) as http:
                while not stop.is_set():
                    response = http.post("/v1/models/toy:predict", json={"instances": [1.0]})
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        answers.append(response.json()["predictions"][0])

        clients = [threading.Thread(target=client) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            wait_for(lambda: len(answers) > 20)
            copy_version(toy_model_v2, base, 2)  # the new version arrives while requests flow...
            wait_for(lambda: available(running) == [2])
            shutil.rmtree(base / "1")  # ...and the old one is deleted
            count = len(answers)
            wait_for(lambda: len(answers) > count + 20)
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)
    assert failures == []
    assert answers[0] == 2.5 and answers[-1] == 3.5  # y = 0.5·1 + 2 from v1, + 3 from v2
    assert set(answers) == {2.5, 3.5}


def test_corrupt_version_beside_a_good_one(tmp_path, toy_model_v1):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    with running_server(model_name="toy", model_base_path=base, file_system_poll_wait_seconds=0.2) as running:
        statuses = {int(s["version"]): s for s in running.rest.get("/v1/models/toy").json()["model_version_status"]}
        assert statuses[2]["state"] == "END"
        assert statuses[2]["status"]["error_code"] != "OK"
        assert statuses[2]["status"]["error_message"]
        assert statuses[1]["state"] == "AVAILABLE"  # latest is broken: the working version keeps serving
        assert running.rest.post("/v1/models/toy:predict", json={"instances": [1.0]}).json() == {"predictions": [2.5]}
        assert running.rest.get("/readyz").status_code == 200


def test_a_model_with_no_loadable_version_is_not_ready(tmp_path):
    base = tmp_path / "toy"
    (base / "1").mkdir(parents=True)
    with running_server(model_name="toy", model_base_path=base, file_system_poll_wait_seconds=0) as running:
        assert running.rest.get("/readyz").status_code == 503
        status = running.rest.get("/v1/models/toy").json()["model_version_status"][0]
        assert status["state"] == "END" and status["status"]["error_code"] != "OK"
        response = running.rest.post("/v1/models/toy:predict", json={"instances": [1.0]})
        assert response.status_code == 404


def test_version_policies_pick_from_integer_directories(tmp_path):
    for name in ("1", "2", "10", "tmp-3", ".incoming-4"):
        (tmp_path / name).mkdir()
    found = version_directories(tmp_path)
    assert found == [1, 2, 10]
    policy = model_server_config_pb2.ModelConfig().model_version_policy
    assert aspired_versions(policy, found) == {10}  # default: latest 1
    policy.latest.num_versions = 2
    assert aspired_versions(policy, found) == {2, 10}
    policy.all.SetInParent()
    assert aspired_versions(policy, found) == {1, 2, 10}
    policy.specific.versions.extend([1, 7])
    assert aspired_versions(policy, found) == {1}


def test_config_file_with_specific_versions_and_labels(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    config = tmp_path / "models.config"
    config.write_text(config_text(base, labels={"stable": 1, "canary": 2}))
    with running_server(model_config_file=config, file_system_poll_wait_seconds=0) as running:
        assert sorted(available(running)) == [1, 2]
        stable = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
        canary = running.rest.post("/v1/models/toy/labels/canary:predict", json={"instances": [1.0]})
        assert stable.json() == {"predictions": [2.5]} and canary.json() == {"predictions": [3.5]}
        latest = running.rest.post("/v1/models/toy:predict", json={"instances": [1.0]})
        assert latest.json() == {"predictions": [3.5]}  # no version: the highest available
        assert running.rest.get("/v1/models/toy/labels/stable/metadata").json()["model_spec"]["version"] == "1"


def test_reload_config_request_moves_labels_and_removes_models(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    with running_server(model_config_file=_write(tmp_path, config_text(base, labels={"stable": 1}))) as running:
        stub = model_service_pb2_grpc.ModelServiceStub(running.channel)

        def reload(text: str):  # type: ignore[no-untyped-def]
            request = model_management_pb2.ReloadConfigRequest(config=parse_model_config(text))
            return stub.HandleReloadConfigRequest(request, timeout=60).status

        assert reload(config_text(base, labels={"stable": 2})).error_code == 0
        moved = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
        assert moved.json() == {"predictions": [3.5]}

        refused = reload(config_text(base, versions=(1,), labels={"stable": 2}))
        assert refused.error_code != 0
        assert "not currently available" in refused.error_message

        empty = model_server_config_pb2.ModelServerConfig()
        empty.model_config_list.SetInParent()
        status = stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=empty), timeout=60)
        assert status.status.error_code == 0
        assert running.rest.get("/v1/models/toy").status_code == 404  # the new config replaces the old


def test_grpc_predict_reports_the_version_that_answered(tmp_path, toy_model_v1, toy_model_v2):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    with running_server(model_name="toy", model_base_path=base, file_system_poll_wait_seconds=0.2) as running:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        assert stub.Predict(request, timeout=10).model_spec.version.value == 1
        copy_version(toy_model_v2, base, 2)
        wait_for(lambda: stub.Predict(request, timeout=10).model_spec.version.value == 2)
        assert tf.make_ndarray(stub.Predict(request, timeout=10).outputs["y"]).tolist() == [3.5]
        request.model_spec.version.value = 1  # unloaded: the latest-1 policy keeps only version 2
        wait_for(lambda: _code(stub, request) == grpc.StatusCode.NOT_FOUND)


def _code(stub, request):  # type: ignore[no-untyped-def]
    try:
        stub.Predict(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _write(tmp_path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "models.config"
    path.write_text(text)
    return path


def test_config_file_is_polled_for_changes(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    config = _write(tmp_path, config_text(base, labels={"stable": 1}))
    with running_server(
        model_config_file=config, model_config_file_poll_wait_seconds=0.2, file_system_poll_wait_seconds=0
    ) as running:

        def stable() -> list[float]:
            response = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
            return response.json().get("predictions", [])

        assert stable() == [2.5]
        config.write_text("this is { not a config")
        time.sleep(0.6)
        assert stable() == [2.5]  # refused: the running config stays
        config.write_text(config_text(base, labels={"stable": 2}))
        wait_for(lambda: stable() == [3.5])


def test_an_unloaded_version_is_freed(tmp_path, toy_model_v1, toy_model_v2):
    """Memory growth on version swaps is a known TF Serving complaint; nothing here may hold the old version."""
    import gc
    import weakref

    from imgclf.serving.manager import ModelManager
    from imgclf.serving.metrics import ServingMetrics
    from imgclf.serving.options import ServerOptions, load_model_config

    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    manager = ModelManager(load_model_config(ServerOptions(model_name="toy", model_base_path=base)), ServingMetrics())
    manager.poll_once()
    old = weakref.ref(manager.servable("toy"))
    copy_version(toy_model_v2, base, 2)
    manager.poll_once()
    assert manager.servable("toy").version == 2
    gc.collect()
    assert old() is None
