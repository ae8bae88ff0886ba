"""Registry states: promote, canary, rollback, labels, delete, and the `imgclf models` commands."""

from __future__ import annotations

import json
import threading

import pytest

from imgclf.errors import RegistryError
from imgclf.registry.store import Registry
from tests.helpers import _one_error_line, run_cli


def test_promote_canary_and_rollback(registry):
    store = Registry(registry)
    assert store.state("cats_dogs").stable is None and store.serving_version("cats_dogs") == 3
    store.promote("cats_dogs", 1, force=True)
    store.promote("cats_dogs", 2, to="canary", canary_share=0.1, force=True)
    state = store.state("cats_dogs")
    assert state.labels == {"stable": 1, "canary": 2} and state.canary_share == 0.1
    assert store.info("cats_dogs", 2).state == "canary"
    store.promote("cats_dogs", 2, force=True)  # the canary becomes stable
    state = store.state("cats_dogs")
    assert state.labels == {"stable": 2} and state.canary_share == 0
    assert [h["version"] for h in state.history] == [1, 2]
    store.promote("cats_dogs", 3, to="canary", canary_share=0.5, force=True)
    state = store.rollback("cats_dogs")  # ends the canary first
    assert state.labels == {"stable": 2} and state.canary_share == 0
    state = store.rollback("cats_dogs")
    assert state.labels == {"stable": 1} and state.canary_share == 0
    with pytest.raises(RegistryError, match="no earlier stable version"):
        store.rollback("cats_dogs")
    with pytest.raises(RegistryError, match="already stable"):
        store.promote("cats_dogs", 1, to="canary", force=True)
    with pytest.raises(RegistryError, match="has no version 9"):
        store.promote("cats_dogs", 9, force=True)
    with pytest.raises(RegistryError, match="between 0 and 1"):
        store.promote("cats_dogs", 3, to="canary", canary_share=1.5, force=True)


def test_labels_and_delete(registry):
    store = Registry(registry)
    store.promote("cats_dogs", 2, force=True)
    store.label("cats_dogs", 1, "golden")
    with pytest.raises(RegistryError, match="labelled golden"):
        store.delete("cats_dogs", 1)
    with pytest.raises(RegistryError, match="labelled stable"):
        store.delete("cats_dogs", 2)
    with pytest.raises(RegistryError, match="use promote"):
        store.label("cats_dogs", 1, "stable")
    with pytest.raises(RegistryError, match="letters, digits"):
        store.label("cats_dogs", 1, "bad-label")
    store.delete("cats_dogs", 3)
    assert store.versions("cats_dogs") == [1, 2]
    assert not any(p.name.startswith(".deleting") for p in (registry / "cats_dogs").iterdir())
    store.unlabel("cats_dogs", "golden")
    store.delete("cats_dogs", 1)
    assert store.versions("cats_dogs") == [2]


def test_concurrent_changes_are_serialized(registry):
    store = Registry(registry)
    store.promote("cats_dogs", 1, force=True)
    errors = []

    def label(i: int) -> None:
        try:
            Registry(registry).label("cats_dogs", 1 + i % 3, f"l{i}")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=label, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store.state("cats_dogs").labels) == 21  # stable + 20: no lost update


def test_models_commands(registry, capsys):
    refused = run_cli(["models", "promote", "cats_dogs", "2", "--registry", registry], capsys)
    _one_error_line(*refused[::2], "has not been through the gate")
    code, out, err = run_cli(["models", "promote", "cats_dogs", "2", "--force", "--registry", registry], capsys)
    assert code == 0 and "stable=2" in out, err
    canary = [
        "models",
        "promote",
        "cats_dogs",
        "3",
        "--to",
        "canary",
        "--share",
        "0.2",
        "--force",
        "--registry",
        registry,
    ]
    code, out, _ = run_cli(canary, capsys)
    assert "canary=3" in out and "20%" in out
    code, out, _ = run_cli(["models", "list", "--registry", registry], capsys)
    assert code == 0 and "stable" in out and "canary" in out and "0.95" in out
    code, out, _ = run_cli(["models", "show", "cats_dogs", "3", "--registry", registry], capsys)
    assert json.loads(out)["registry"]["state"] == "canary"
    code, out, _ = run_cli(["models", "label", "cats_dogs", "1", "golden", "--registry", registry], capsys)
    assert "golden=1" in out
    _one_error_line(
        *run_cli(["models", "delete", "cats_dogs", "1", "--registry", registry], capsys)[::2], "labelled golden"
    )
    code, out, _ = run_cli(["models", "rollback", "cats_dogs", "--registry", registry], capsys)
    assert code == 0 and "canary" not in out and "stable=2" in out  # the canary ended
    _one_error_line(
        *run_cli(["models", "rollback", "cats_dogs", "--registry", registry], capsys)[::2], "no earlier stable"
    )
    _one_error_line(
        *run_cli(["models", "list", "--name", "nope", "--registry", registry], capsys)[::2], "no model 'nope'"
    )
    _one_error_line(*run_cli(["models", "list", "--registry", registry / "missing"], capsys)[::2], "is not a directory")


def test_tfserving_config_command(registry, tmp_path, capsys):
    """The files themselves are loaded by the model server in tests/serving/test_tfserving_config.py."""
    Registry(registry).promote("cats_dogs", 2, force=True)
    command = ["models", "tfserving-config", "--out", tmp_path / "tfs", "--base-path-prefix", "/models"]
    code, out, err = run_cli([*command, "--registry", registry], capsys)
    assert code == 0 and "tensorflow_model_server --model_config_file" in out, err
    text = (tmp_path / "tfs" / "models.config").read_text()
    assert 'base_path: "/models/cats_dogs"' in text and 'key: "stable"' in text
    assert {p.name for p in (tmp_path / "tfs").iterdir()} == {"models.config", "batching.config", "monitoring.config"}
