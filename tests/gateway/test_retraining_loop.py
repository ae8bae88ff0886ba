"""Issue 20, end to end on real photos: v1 serves; traffic is reviewed (audit items included);
`imgclf retrain` builds v2, the gate blesses it, it becomes canary; traffic continues; `models judge`
promotes it; no request fails. Then a run on deliberately wrong reviews is refused and stable stays."""

from __future__ import annotations

import json
import time

import pytest

from imgclf.gateway.api_keys import create_key
from imgclf.gateway.routing import bucket
from imgclf.registry.store import Registry
from imgclf.retraining.judge import JudgePolicy, apply, judge
from imgclf.storage.database import connect
from tests.conftest import write_csv
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import bearer, run_cli

pytestmark = pytest.mark.slow


def _files(cats_dogs_dir, folder, start, count):
    return [(p, label) for label in ("cats", "dogs")
            for p in sorted((cats_dogs_dir / folder / label).iterdir())[start:start + count]]  # fmt: skip


def _send(client, key, batch, truth, failures):
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p, _ in batch]
    answer = client.post("/v1/predict", files=files, headers=bearer(key))
    if answer.status_code != 200:
        failures.append(answer.status_code)
        return
    for prediction, (_, label) in zip(answer.json()["predictions"], batch, strict=True):
        truth[prediction["id"]] = label


def _traffic(client, key, files, truth, failures):
    for start in range(0, len(files), 8):
        _send(client, key, files[start : start + 8], truth, failures)


def _review_queue(client, key, label_of):
    """Review every queued item with ``label_of(prediction_id)``; return how many."""
    done, cursor = 0, None
    while True:
        page = client.get("/v1/reviews", params={"limit": 100, **({"cursor": cursor} if cursor else {})},
                          headers=bearer(key)).json()  # fmt: skip
        for item in page["items"]:
            answer = client.post(f"/v1/reviews/{item['id']}", json={"label": label_of(item["id"])}, headers=bearer(key))
            assert answer.status_code == 200, answer.text
            done += 1
        cursor = page["next_cursor"]
        if not cursor:
            return done


def test_reviewed_traffic_retrains_a_better_canary_that_the_judge_promotes(
    cats_dogs_dir, mobilenet_v2_weights, tmp_path, capsys, monkeypatch
):
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run
    from tests.conftest import tiny_config

    # Batch size 4: the retrains inherit it, so even their first epoch takes tens of steps. Early stopping keeps
    # the best epoch on validation, and with wrong reviews that is the first; at batch 32 it was three steps
    # from stable's weights, not enough to be refused reliably (the candidate passed as "not worse").
    rows = [[str(p), label, "train"] for p, label in _files(cats_dogs_dir, "train", 0, 6)]
    rows += [[str(p), label, "val"] for p, label in _files(cats_dogs_dir, "validation", 0, 10)]
    config = tiny_config(
        write_csv(tmp_path / "v1.csv", rows), tmp_path / "v1", model="mobilenet_v2", alpha=0.35,
        weights=str(mobilenet_v2_weights), image_size=128, epochs=8, fine_tune_epochs=0, batch_size=4,
    )  # fmt: skip
    run = train(config, report=lambda _: None)
    registry_dir = tmp_path / "registry"
    export_run(run.path, registry_dir, "cats_dogs")
    registry = Registry(registry_dir)
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = gateway_settings(
        tmp_path, registry_dir, database_url, review_audit_rate=0.3, review_confidence_threshold=0.9,
        rate_limit_burst=10_000, shadow_quiet_ms=0,
    )  # fmt: skip
    for name, value in (("REGISTRY", registry_dir), ("DATABASE_URL", database_url),
                        ("IMAGE_STORE_DIR", tmp_path / "images")):  # fmt: skip
        monkeypatch.setenv(f"IMGCLF_{name}", str(value))
    truth: dict[str, str] = {}
    failures: list[int] = []
    held_back = _files(cats_dogs_dir, "train", 100, 80)  # never in v1's data
    with running_gateway(settings) as running:
        key, reviewer = running.key("predict"), running.key("review")
        _traffic(running.client, key, held_back, truth, failures)
        reviewed = _review_queue(running.client, reviewer, truth.__getitem__)
        audits = running.client.get("/v1/reviews", params={"status": "reviewed", "reason": "audit", "limit": 200},
                                    headers=bearer(reviewer)).json()["items"]  # fmt: skip
        assert audits and all(item["review_reason"] == "audit" for item in audits)

        code, out, err = run_cli(["retrain", "--name", "cats_dogs", "--work", tmp_path / "work",
                                  "--canary-share", "0.5"], capsys)  # fmt: skip
        assert code == 0, out + err
        state = registry.state("cats_dogs")
        assert state.stable == 1 and state.canary == 2, out
        card = registry.card("cats_dogs", 2)
        assert card["lineage"]["parent_version"] == 1 and card["lineage"]["reviewed_images"] > 0
        assert card["lineage"]["audit_images_for_evaluation"] > 0
        gate = json.loads((registry.version_dir("cats_dogs", 2) / "assets.extra" / "gate_result.json").read_text())
        assert gate["candidate_metrics"]["accuracy"] > gate["baseline_metrics"]["accuracy"], gate

        deadline = time.monotonic() + 120  # the gateway loads the canary, then routes to it
        while not running.gateway.backend.is_available(2):
            assert time.monotonic() < deadline, "the canary never became available"
            time.sleep(0.2)
        # Routing is sticky per key: one client whose key the canary takes, one that stays on stable.
        keys = [create_key(running.gateway.engine, f"client {i}", "predict") for i in range(40)]
        on_canary = next(k.secret for k in keys if bucket(k.info.id, 2) < 0.5)
        on_stable = next(k.secret for k in keys if bucket(k.info.id, 2) >= 0.5)
        more = _files(cats_dogs_dir, "train", 300, 40)
        _traffic(running.client, on_canary, more[::2], truth, failures)
        _traffic(running.client, on_stable, more[1::2], truth, failures)
        deadline = time.monotonic() + 120  # canary answers are compared with stable in the background
        while running.metric("imgclf_gateway_agreement_total", version="2", role="canary") < 40:
            assert time.monotonic() < deadline, "canary comparisons did not run"
            time.sleep(0.2)
        verdict = judge(registry, "cats_dogs", connect(database_url), running.client.get("/metrics").text,
                        JudgePolicy(min_predictions=20, min_comparisons=10))  # fmt: skip
        assert verdict.outcome == "promote", [c.message for c in verdict.checks]
        apply(registry, verdict)
        assert registry.state("cats_dogs").stable == 2 and registry.state("cats_dogs").canary is None
        assert [d["outcome"] for d in registry.state("cats_dogs").decisions] == ["canary", "promote"]

        # A sloppy reviewer relabels every reviewed item wrongly (earlier ones too); audit items stay right.
        # The gate refuses.
        wrong = {"cats": "dogs", "dogs": "cats"}
        _traffic(running.client, key, _files(cats_dogs_dir, "train", 400, 60), truth, failures)
        _review_queue(running.client, reviewer, truth.__getitem__)
        page = running.client.get("/v1/reviews", params={"status": "reviewed", "limit": 500},
                                  headers=bearer(reviewer)).json()  # fmt: skip
        for item in page["items"]:
            if item["review_reason"] != "audit":
                running.client.post(f"/v1/reviews/{item['id']}", json={"label": wrong[truth[item["id"]]]},
                                    headers=bearer(reviewer))  # fmt: skip
        code, out, err = run_cli(["retrain", "--name", "cats_dogs", "--work", tmp_path / "work"], capsys)
        assert code == 3, out + err
        assert "was not blessed" in out and registry.state("cats_dogs").stable == 2
        assert registry.state("cats_dogs").canary is None
    assert failures == []
    assert reviewed >= 20
