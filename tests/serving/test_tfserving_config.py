"""`imgclf models tfserving-config`: the files a TF Serving deployment needs, generated from the
registry, loaded by the model server (which parses TF Serving's formats) with its labels."""

from __future__ import annotations

from imgclf.registry.store import Registry
from imgclf.registry.tfserving import write_tfserving_config
from imgclf.serving.options import load_batching_parameters
from tests.serving.conftest import running_server
from tests.serving.test_versions import available, copy_version


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
    models_config = (tmp_path / "tfs" / "models.config").read_text()
    assert 'key: "canary"' in models_config and "specific" in models_config
    assert load_batching_parameters(tmp_path / "tfs" / "batching.config").max_batch_size == 32
    assert 'path: "/monitoring/prometheus/metrics"' in (tmp_path / "tfs" / "monitoring.config").read_text()

    with running_server(
        model_config_file=tmp_path / "tfs" / "models.config", file_system_poll_wait_seconds=0
    ) as running:
        assert sorted(available(running)) == [1, 2, 3, 4]  # the labelled versions and the newest
        stable = running.rest.post("/v1/models/toy/labels/stable:predict", json={"instances": [1.0]})
        canary = running.rest.post("/v1/models/toy/labels/canary:predict", json={"instances": [1.0]})
        assert stable.json() == {"predictions": [2.5]} and canary.json() == {"predictions": [3.5]}
        assert running.rest.get("/v1/models/toy/labels/golden/metadata").json()["model_spec"]["version"] == "3"
