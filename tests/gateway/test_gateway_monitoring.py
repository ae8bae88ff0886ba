"""Monitoring through the gateway: what each prediction records, the periodic drift check's
gauges, and ``imgclf monitor drift|quality`` on the prediction log (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import select

from imgclf.export.inference import ExportedModel
from imgclf.export.reference import observe_images
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.storage.database import connect
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import record_review
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import _one_error_line, bearer, run_cli, upload


def test_predictions_record_what_the_reference_measures(cats_dogs_registry, photos, database_url, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, database_url, drift_min_window=5)
    with running_gateway(settings) as gw:
        answer = gw.client.post("/v1/predict", files=upload(photos), headers=bearer(gw.key())).json()
        with gw.gateway.engine.connect() as connection:
            rows = {r.id: r for r in connection.execute(select(Prediction))}
        expected = observe_images(ExportedModel.load(cats_dogs_registry / "cats_dogs" / "1"), [d for _, d in photos])
        for i, prediction in enumerate(answer["predictions"]):
            row = rows[prediction["id"]]
            assert set(row.input_stats) == set(STATISTICS)
            for name in STATISTICS:  # the gateway's preview decode and the reference's agree exactly
                assert row.input_stats[name] == expected.statistics[name][i], name
            np.testing.assert_allclose(row.embedding, expected.embeddings[i], rtol=1e-4, atol=1e-6)
            assert row.confidence == expected.confidence[i]

        # The periodic check (run once here) exports drift and quality gauges.
        [report] = gw.gateway.drift_monitor.run_once()
        assert report.window_size == len(photos) and report.verdict in ("drift", "no_drift")
        labels = {"model": "cats_dogs", "version": "1"}
        assert gw.metric("imgclf_drift_window_predictions", **labels) == len(photos)
        assert gw.metric("imgclf_drift_detected", **labels) == (report.verdict == "drift")
        assert gw.metric("imgclf_drift_p_value", test="embedding.mmd", **labels) > 0
        assert 0 < gw.metric("imgclf_model_estimated_accuracy", **labels) <= 1
        # The local backend's model-server series are on the same /metrics.
        assert ":imgclf:serving:batch_size_bucket" in gw.client.get("/metrics").text
        # A version without recent traffic is no longer checked, and its gauges go (no alert sticks).
        monitor = gw.gateway.drift_monitor
        monitor.settings = monitor.settings.model_copy(update={"drift_lookback_hours": 1e-9})
        assert monitor.run_once() == []
        text = gw.client.get("/metrics").text
        assert "imgclf_drift_window_predictions{" not in text and "imgclf_drift_p_value{" not in text


def test_monitor_drift_and_quality_commands(cats_dogs_registry, photos, tmp_path, capsys, monkeypatch):
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("IMGCLF_DATABASE_URL", database_url)
    monkeypatch.setenv("IMGCLF_REGISTRY", str(cats_dogs_registry))
    monkeypatch.setenv("IMGCLF_DRIFT_MIN_WINDOW", "5")
    connect(database_url).dispose()
    _one_error_line(*run_cli(["monitor", "drift"], capsys)[::2], "no predictions of cats_dogs")
    _one_error_line(*run_cli(["monitor", "drift", "--model", "nope"], capsys)[::2], "'nope' is not in the registry")

    with running_gateway(gateway_settings(tmp_path, cats_dogs_registry, database_url)) as gw:
        answer = gw.client.post("/v1/predict", files=upload(photos), headers=bearer(gw.key())).json()
    record_review(connect(database_url), answer["predictions"][0]["id"], "cats", "ana")

    code, out, err = run_cli(
        ["monitor", "drift", "--since", "1h", "--json", tmp_path / "drift.json", "--html", tmp_path / "drift.html"],
        capsys,
    )
    assert code == 0, err
    assert "cats_dogs version 1:" in out and "embedding.mmd" in out and "inputs.brightness" in out
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["window_size"] == len(photos) and report["verdict"] in ("drift", "no_drift")
    assert report["quality"]["reviewed"] == 1
    page = (tmp_path / "drift.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Verdict" in page

    code, out, err = run_cli(
        ["monitor", "quality", "--since", "1h", "--bucket", "1h", "--json", tmp_path / "q.json"], capsys
    )
    assert code == 0, err
    [point] = json.loads((tmp_path / "q.json").read_text())
    assert point["model_version"] == 1 and point["predictions"] == len(photos) and point["reviewed"] == 1
    assert point["realized_accuracy"] == (answer["predictions"][0]["label"] == "cats")
    assert 0 < point["estimated_accuracy"] <= 1

    _one_error_line(*run_cli(["monitor", "drift", "--since", "yesterday"], capsys)[::2], "cannot read duration")
    monkeypatch.setenv("IMGCLF_DRIFT_KS_P_VALUE", "2")
    _one_error_line(*run_cli(["monitor", "drift"], capsys)[::2], "invalid IMGCLF_DRIFT_KS_P_VALUE")


def test_one_worker_checks_per_interval(tmp_path, cats_dogs_registry):
    """Gunicorn workers share the spool directory: a check taken by one is skipped by the others."""
    from imgclf.gateway.drift_monitor import DriftMonitor
    from imgclf.gateway.metrics import GatewayMetrics

    settings = gateway_settings(tmp_path, cats_dogs_registry, "sqlite://", drift_interval_seconds=300)
    first, second = (DriftMonitor(None, settings, "cats_dogs", GatewayMetrics()) for _ in range(2))  # type: ignore[arg-type]
    with first._turn() as mine, second._turn() as theirs:
        assert (mine, theirs) == (True, False)  # the lock is held
    with second._turn() as theirs:
        assert not theirs  # the first checked less than half an interval ago
    (tmp_path / "spool" / ".drift-check.lock").write_text("garbage")
    with second._turn() as theirs:
        assert theirs
