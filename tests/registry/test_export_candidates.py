"""Exports are candidates (issue 16): the first version of a model becomes stable when exported; later
exports serve nothing until promoted; the gate compares with the version actually serving; TF
Serving's plain "newest serves" stays available when asked for (``models policy NAME latest``)."""

from __future__ import annotations

import json

import pytest

from imgclf.gateway.routing import TrafficRouter
from imgclf.registry.gate import MetricThreshold, run_gate
from imgclf.registry.publish import export_run
from imgclf.registry.store import Registry
from imgclf.registry.tfserving import model_server_config
from tests.helpers import run_cli


def loaded_and_labels(store: Registry) -> tuple[list[int], dict[str, int]]:
    config = model_server_config(store, names=["shapes"]).model_config_list.config[0]
    return sorted(config.model_version_policy.specific.versions), dict(config.version_labels)


@pytest.mark.slow
def test_exports_are_candidates_until_promoted(shapes_run, shapes_dir, tmp_path, capsys):
    root = tmp_path / "registry"
    root.mkdir()
    store = Registry(root)
    export_run(shapes_run.path, root, "shapes")
    state = store.state("shapes")
    assert state.labels == {"stable": 1} and [h["version"] for h in state.history] == [1]

    code, out, err = run_cli(["export", shapes_run.path, "--registry", root, "--name", "shapes"], capsys)
    assert code == 0 and "candidate" in out and "models promote shapes 2" in out, err
    assert store.state("shapes").labels == {"stable": 1}
    assert TrafficRouter(store, "shapes").route("any-key").version == 1
    assert loaded_and_labels(store) == ([1], {"stable": 1})  # the candidate is not even loaded

    # The gate compares with the version that serves.
    accuracy = (MetricThreshold("accuracy", lower_bound=0.0, direction="higher_is_better", absolute=-1.0),)
    assert run_gate(store, "shapes", 2, str(shapes_dir), accuracy).baseline_version == 1

    # A registry written before exports were candidates (no state file): the version that was serving
    # (the newest) is made stable before the new export appears, so the export does not take over.
    (root / "shapes" / "registry.json").unlink()
    export_run(shapes_run.path, root, "shapes")
    assert store.state("shapes").labels == {"stable": 2}
    assert run_gate(store, "shapes", 3, str(shapes_dir), accuracy).baseline_version == 2

    # TF Serving's behaviour, asked for explicitly: every export serves at once.
    code, out, err = run_cli(["models", "policy", "shapes", "latest", "--registry", root], capsys)
    assert code == 0, err
    export_run(shapes_run.path, root, "shapes")
    state = store.state("shapes")
    assert state.labels == {"stable": 4} and state.history[-1]["reason"] == "policy latest"
    run_cli(["models", "policy", "shapes", "promoted", "--registry", root], capsys)
    export_run(shapes_run.path, root, "shapes")
    assert store.state("shapes").labels == {"stable": 4}
    manifest = json.loads((root / "shapes" / "5" / "assets.extra" / "export_manifest.json").read_text())
    assert "saved_model.pb" in manifest["files"]
