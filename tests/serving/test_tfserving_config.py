"""`imgclf models tfserving-config`: the files a TF Serving deployment needs, generated from the
registry, loaded by the model server (which parses TF Serving's formats) with its labels."""

from __future__ import annotations

import threading

from imgclf.registry.store import Registry
from imgclf.registry.tfserving import watch_tfserving_config, write_tfserving_config
from imgclf.serving.options import load_batching_parameters
from tests.helpers import available, copy_version
from tests.serving.conftest import running_server, wait_for


def test_generated_config_serves_stable_and_canary_by_label(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "registry" / "toy"
    base.mkdir(parents=True)
    for version, source in ((1, toy_model_v1), (2, toy_model_v2), (3, toy_model_v1), (4, toy_model_v1)):
        copy_version(source, base, version)
    registry = Registry(tmp_path / "registry")
    registry.promote("toy", 1, force=True)
    registry.promote("toy", 2, to="canary", canary_share=0.1, force=True)
    registry.label("toy", 3, "golden")

    write_tfserving_config(registry, tmp_path / "tfs")
    written = (tmp_path / "tfs" / "models.config").stat().st_mtime_ns
    write_tfserving_config(registry, tmp_path / "tfs")  # unchanged registry: the file is left alone
    assert (tmp_path / "tfs" / "models.config").stat().st_mtime_ns == written
    models_config = (tmp_path / "tfs" / "models.config").read_text()
    assert 'key: "canary"' in models_config and "specific" in models_config
    assert load_batching_parameters(tmp_path / "tfs" / "batching.config").max_batch_size == 32
    assert 'path: "/monitoring/prometheus/metrics"' in (tmp_path / "tfs" / "monitoring.config").read_text()

    with running_server(
        model_config_file=tmp_path / "tfs" / "models.config", file_system_poll_wait_seconds=0
    ) as running:
        assert sorted(available(running)) == [1, 2, 3]  # the labelled versions; 4 is a candidate nobody promoted
        stable = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
        canary = running.rest.post("/v1/models/toy/labels/canary:predict", json={"instances": [1.0]})
        assert stable.json() == {"predictions": [2.5]} and canary.json() == {"predictions": [3.5]}
        assert running.rest.get("/v1/models/toy/labels/golden/metadata").json()["model_spec"]["version"] == "3"


def test_watched_config_carries_promote_and_rollback_to_a_running_model_server(tmp_path, toy_model_v1, toy_model_v2):
    """The deploy files' sidecar (`tfserving-config --watch`) + a model server polling its config:
    a promotion and a rollback in the registry reach the server's labels without a restart."""
    base = tmp_path / "registry" / "toy"
    base.mkdir(parents=True)
    copy_version(toy_model_v1, base, 1)
    copy_version(toy_model_v2, base, 2)
    registry = Registry(tmp_path / "registry")
    registry.promote("toy", 1, force=True)
    out, stop = tmp_path / "tfs", threading.Event()
    watcher = threading.Thread(
        target=watch_tfserving_config, args=(registry, out), kwargs={"interval": 0.2, "stop": stop}
    )
    watcher.start()
    try:
        wait_for(lambda: (out / "models.config").exists())
        before = (out / "models.config").stat().st_mtime_ns
        with running_server(
            model_config_file=out / "models.config",
            model_config_file_poll_wait_seconds=0.3,
            file_system_poll_wait_seconds=0,
        ) as running:

            def stable_answer() -> list[float] | None:
                response = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
                return response.json().get("predictions")

            assert stable_answer() == [2.5]
            registry.promote("toy", 2, force=True)
            wait_for(lambda: stable_answer() == [3.5], timeout=30)
            registry.rollback("toy")
            wait_for(lambda: stable_answer() == [2.5], timeout=30)
    finally:
        stop.set()
        watcher.join()
    assert (out / "models.config").stat().st_mtime_ns > before  # rewritten on change
    assert not list(out.glob(".*.tmp"))  # replaced atomically, nothing left behind
