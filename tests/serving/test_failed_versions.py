"""A version that fails to load never displaces one that serves, whatever the policy says; a version
whose files arrive late is retried when its directory changes; failures are reported (issue 16)."""

from __future__ import annotations

import shutil
import time

from imgclf.serving.manager import ModelManager
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import ServerOptions, load_model_config, parse_model_config
from tests.helpers import config_text, copy_version
from tests.serving.conftest import wait_for


def failed_gauge(metrics: ServingMetrics, name: str = "toy") -> float:
    return metrics.registry.get_sample_value(":imgclf:serving:failed_versions", {"model_name": name})


def test_a_broken_version_named_by_a_specific_policy_does_not_unload_the_serving_one(tmp_path, toy_model_v1):
    """What `models tfserving-config` wrote on the issue's registry: ``specific { versions: 99 }``."""
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    (base / "99").mkdir()
    (base / "99" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    metrics = ServingMetrics()
    manager = ModelManager(parse_model_config(config_text(base, versions=(1,))), metrics)
    manager.poll_once()
    assert manager.servable("toy").version == 1

    manager.reload_config(parse_model_config(config_text(base, versions=(99,))))
    assert manager.servable("toy").version == 1  # still serving: 99 never loaded
    assert manager.is_ready()
    (status,) = manager.status("toy", 99)
    assert status.state == "END" and status.error_code != "OK" and status.error_message
    assert failed_gauge(metrics) == 1

    manager.poll_once()  # and on every later pass
    assert manager.servable("toy").version == 1
    shutil.rmtree(base / "99")
    manager.poll_once()
    assert failed_gauge(metrics) == 0


def test_a_half_copied_version_loads_once_its_files_arrive(tmp_path, toy_model_v1, toy_model_v2):
    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    # Copied straight into place (cp -r): the directory exists before its files are whole.
    arriving = base / "2"
    shutil.copytree(toy_model_v2, arriving)
    whole = (arriving / "saved_model.pb").read_bytes()
    (arriving / "saved_model.pb").write_bytes(whole[: len(whole) // 2])
    metrics = ServingMetrics()
    options = ServerOptions(model_name="toy", model_base_path=base)
    manager = ModelManager(load_model_config(options), metrics, retry_backoff_seconds=0.2)
    manager.poll_once()
    assert manager.servable("toy").version == 1  # latest is half there: the previous one serves
    assert manager.status("toy", 2)[0].state == "END"
    assert failed_gauge(metrics) == 1

    assert "not whole" in manager.status("toy", 2)[0].error_message  # seen before TensorFlow tried it

    (arriving / "saved_model.pb").write_bytes(whole)  # the rest of the copy lands

    def loaded() -> bool:
        manager.poll_once()
        return manager.servable("toy").version == 2

    wait_for(loaded, timeout=20, interval=0.1)
    assert manager.status("toy", 2)[0].error_code == "OK"
    assert failed_gauge(metrics) == 0


def test_a_version_tensorflow_refuses_is_retried_only_when_it_changes_with_backoff(tmp_path, toy_model_v1):
    from tests.registry.conftest import minimal_saved_model

    base = tmp_path / "toy"
    base.mkdir()
    copy_version(toy_model_v1, base, 1)
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(minimal_saved_model(unknown_op=True))  # well-formed, fails to load
    metrics = ServingMetrics()
    options = ServerOptions(model_name="toy", model_base_path=base)
    manager = ModelManager(load_model_config(options), metrics, retry_backoff_seconds=0.5)

    def attempts() -> float:
        labels = {"model_path": str(base / "2"), "status": "fail"}
        return metrics.registry.get_sample_value(":tensorflow:cc:saved_model:load_attempt_count_total", labels) or 0

    manager.poll_once()
    assert attempts() == 1 and manager.servable("toy").version == 1
    time.sleep(0.6)
    manager.poll_once()
    assert attempts() == 1  # unchanged: a broken file does not mend itself
    (base / "2" / "saved_model.pb").write_bytes(minimal_saved_model(unknown_op=True))  # rewritten: a new mtime
    manager.poll_once()
    assert attempts() == 2  # its backoff (0.5 s) had passed
    (base / "2" / "saved_model.pb").write_bytes(minimal_saved_model(unknown_op=True))
    manager.poll_once()
    assert attempts() == 2  # changed again, but within the doubled backoff (1 s)
    wait_for(lambda: (manager.poll_once(), attempts())[1] == 3, timeout=5, interval=0.1)
    assert manager.servable("toy").version == 1
