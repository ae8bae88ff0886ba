"""Releases that cannot hurt production (issue 16), at the registry: what may serve, and every undo.

- a version whose files are broken or still arriving is never promoted, labelled or put in the
  generated TF Serving config; a version nobody promoted is not in it either (exports are candidates);
- ``rollback`` ends a canary first; ``unlabel`` undoes a label but never leaves traffic without stable;
- ``promote --force`` names the checks it overrides and records them with the version.
"""

from __future__ import annotations

import json
import shutil

import pytest

from imgclf.errors import RegistryError
from imgclf.registry.store import Registry
from imgclf.registry.tfserving import model_server_config
from tests.helpers import _one_error_line, run_cli
from tests.registry.conftest import write_version


def specific_versions(store: Registry) -> tuple[list[int], dict[str, int]]:
    config = model_server_config(store, names=["cats_dogs"]).model_config_list.config[0]
    return sorted(config.model_version_policy.specific.versions), dict(config.version_labels)


def test_broken_and_unpromoted_versions_stay_out_of_the_generated_config(registry):
    store = Registry(registry)
    store.promote("cats_dogs", 1, force=True)
    base = registry / "cats_dogs"
    (base / "99").mkdir()
    (base / "99" / "saved_model.pb").write_bytes(b"this is not a SavedModel")  # the reproduction
    assert specific_versions(store) == ([1], {"stable": 1})  # not 99 (broken), not 2 or 3 (never promoted)
    assert store.serving_version("cats_dogs") == 1
    with pytest.raises(RegistryError, match="99.*cannot serve"):
        store.promote("cats_dogs", 99, to="canary", force=True)
    with pytest.raises(RegistryError, match="99.*cannot serve"):
        store.label("cats_dogs", 99, "shadow")

    store.promote("cats_dogs", 2, to="canary", canary_share=0.5, force=True)
    assert specific_versions(store) == ([1, 2], {"stable": 1, "canary": 2})
    # The canary's files are damaged after promotion: it leaves the config, stable keeps serving.
    (base / "2" / "saved_model.pb").write_bytes(b"\x00" * 10)
    assert specific_versions(store) == ([1], {"stable": 1})
    assert store.check("cats_dogs", 2).complete is False


def test_a_version_without_a_manifest_is_checked_by_its_structure(registry):
    store = Registry(registry)
    assert store.check("cats_dogs", 1).complete  # exported before manifests: saved_model.pb parses
    (registry / "cats_dogs" / "4").mkdir()
    assert "no saved_model.pb" in store.check("cats_dogs", 4).reason  # a directory whose files are not there yet


def test_rollback_ends_a_canary_before_touching_stable(registry):
    store = Registry(registry)
    store.promote("cats_dogs", 1, force=True)
    store.promote("cats_dogs", 2, to="canary", canary_share=0.5, force=True)
    state = store.rollback("cats_dogs")  # a bad first canary can be removed
    assert state.labels == {"stable": 1} and state.canary_share == 0
    with pytest.raises(RegistryError, match="no earlier stable version"):
        store.rollback("cats_dogs")
    store.promote("cats_dogs", 2, force=True)
    store.promote("cats_dogs", 3, to="canary", canary_share=0.2, force=True)
    assert store.rollback("cats_dogs").labels == {"stable": 2}  # the canary goes first...
    assert store.rollback("cats_dogs").labels == {"stable": 1}  # ...then stable moves back


def test_unlabel_command_never_leaves_traffic_without_stable(registry, capsys):
    store = Registry(registry)
    store.promote("cats_dogs", 1, force=True)
    store.promote("cats_dogs", 2, to="canary", canary_share=0.3, force=True)
    store.label("cats_dogs", 3, "shadow")
    code, out, err = run_cli(["models", "unlabel", "cats_dogs", "canary", "--registry", registry], capsys)
    assert code == 0 and "canary" not in out and "stable=1" in out, err
    assert store.state("cats_dogs").canary_share == 0
    code, out, err = run_cli(["models", "unlabel", "cats_dogs", "shadow", "--registry", registry], capsys)
    assert code == 0 and store.state("cats_dogs").labels == {"stable": 1}, err
    refused = run_cli(["models", "unlabel", "cats_dogs", "stable", "--registry", registry], capsys)
    _one_error_line(*refused[::2], "no stable version")
    _one_error_line(*run_cli(["models", "unlabel", "cats_dogs", "gold", "--registry", registry], capsys)[::2], "gold")
    store.delete("cats_dogs", 3)  # unlabelled: it may go now


def test_forced_promotion_names_and_records_what_it_overrides(registry, capsys):
    store = Registry(registry)
    store.promote("cats_dogs", 1, force=True)
    base = registry / "cats_dogs"
    write_version(base, 4)  # a card without metrics: the gate's measurement is what models list shows
    gate = {
        "model_name": "cats_dogs", "version": 4, "baseline_version": 1, "data": "eval", "blessed": False,
        "checks": [
            {"metric": "accuracy", "kind": "value", "passed": True, "message": "accuracy 0.829 within bounds"},
            {"metric": "accuracy", "kind": "change", "passed": False,
             "message": "accuracy 0.829 vs stable 0.87: change -0.041 outside absolute -0.01 (higher_is_better)"},
        ],
        "candidate_metrics": {"accuracy": 0.829, "macro_f1": 0.81}, "baseline_metrics": {"accuracy": 0.87},
    }  # fmt: skip
    (base / "4" / "assets.extra" / "gate_result.json").write_text(json.dumps(gate))
    (base / "4" / "assets.extra" / "NOT_BLESSED").touch()

    _one_error_line(*run_cli(["models", "promote", "cats_dogs", "4", "--registry", registry], capsys)[::2], "refused")
    command = ["models", "promote", "cats_dogs", "4", "--to", "canary", "--share", "0.1", "--force"]
    code, out, err = run_cli([*command, "--registry", registry], capsys)
    assert code == 0 and "canary=4" in out, err
    assert "override" in out.lower() and "change -0.041 outside absolute -0.01" in out
    assert "accuracy 0.829 within bounds" not in out  # only the failed checks are named

    shown = json.loads(run_cli(["models", "show", "cats_dogs", "4", "--registry", registry], capsys)[1])
    (override,) = shown["registry"]["overrides"]
    assert override["to"] == "canary" and override["gate"] == "not_blessed"
    assert override["checks"] == [gate["checks"][1]["message"]]
    code, out, _ = run_cli(["models", "list", "--registry", registry], capsys)
    row = next(line for line in out.splitlines() if "│ 4 " in line or " 4 │" in line)
    assert "0.829" in row and "forced" in row  # accuracy as the gate measured it

    # A version never gated is forced over "not gated"; that is recorded too.
    store.rollback("cats_dogs")
    code, out, _ = run_cli(["models", "promote", "cats_dogs", "3", "--force", "--registry", registry], capsys)
    assert "not been through the gate" in out
    assert store.info("cats_dogs", 3).overrides[-1]["gate"] is None


def test_models_list_says_which_versions_cannot_serve(registry, capsys):
    Registry(registry).promote("cats_dogs", 1, force=True)
    shutil.copytree(registry / "cats_dogs" / "1", registry / "cats_dogs" / "5")
    (registry / "cats_dogs" / "5" / "saved_model.pb").write_bytes(b"garbage")
    code, out, _ = run_cli(["models", "list", "--registry", registry], capsys)
    row = next(line for line in out.splitlines() if "│ 5 " in line or " 5 │" in line)
    assert code == 0 and "broken" in row
