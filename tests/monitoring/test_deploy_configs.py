"""deploy/: the Prometheus config, alert rules and Grafana dashboard are valid and only use
metrics that imgclf really exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imgclf.gateway.metrics import GatewayMetrics
from imgclf.serving.metrics import ServingMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "imgclf.json"
_METRIC = re.compile(r"(?<![\w:])(imgclf_\w+|:imgclf:[\w:]+|:tensorflow:[\w:]+)")
_DURATION = re.compile(r"^\d+[smhdw]$")
_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def exported_metric_names() -> set[str]:
    """Every series name the gateway and the model server can export."""
    names = set()
    for registry in (GatewayMetrics().registry, ServingMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES)
    return names


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def promtool() -> str | None:
    found = shutil.which("promtool") or str(Path(sys.executable).parent / "promtool")
    if Path(found).is_file():
        return found
    if os.environ.get("IMGCLF_REQUIRE_SERVICES"):
        pytest.fail("promtool is required in CI (make promtool)")
    return None


def alert_rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load((PROMETHEUS / "alert_rules.yml").read_text())["groups"]
        for rule in group["rules"]
    ]


def test_prometheus_config_scrapes_gateway_and_model_server():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["imgclf-gateway"]["metrics_path"] == "/metrics"
    assert jobs["imgclf-model-server"]["metrics_path"] == "/monitoring/prometheus/metrics"
    assert all((PROMETHEUS / name).is_file() for name in config["rule_files"])


def test_alert_rules_schema_and_metric_names():
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    for wanted in ("PredictLatencyP99High", "ErrorRateHigh", "DataDrift", "NeedsReviewRateHigh", "NoTraffic"):
        assert f"Imgclf{wanted}" in names
    exported = exported_metric_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert _DURATION.match(rule["for"]) and rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_names(rule["expr"]) <= exported, (rule["alert"], metric_names(rule["expr"]) - exported)


def test_alert_rules_with_promtool():
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed (make promtool); the rules were checked by schema only")
    for command in (["check", "config", "prometheus.yml"], ["test", "rules", "alert_rules_test.yml"]):
        result = subprocess.run([tool, *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_loads_and_uses_real_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "model"}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exported = exported_metric_names()
    used = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= exported, (panel["title"], names - exported)
            used |= names
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("latency", "error", "batch", "confidence", "needs-review", "drift", "version"):
        assert topic in titles, topic
    assert "imgclf_drift_p_value" in used and "imgclf_model_estimated_accuracy" in used
