"""Releases through the gateway under continuous load: a 10% canary (sticky per key), promotion to
stable and rollback take effect without restarts and without one failed request."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import httpx

from imgclf.gateway.api_keys import create_key
from imgclf.registry.store import Registry
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import bearer, upload

KEYS = 300


def wait_until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_canary_promote_and_rollback_under_load(cats_dogs_registry, photos, tmp_path):
    for version in (1, 2):  # two versions (same weights: the answers' version field tells them apart)
        shutil.copytree(cats_dogs_registry / "cats_dogs" / "1", tmp_path / "registry" / "cats_dogs" / str(version))
    registry = Registry(tmp_path / "registry")
    registry.promote("cats_dogs", 1, force=True)
    # shadow_quiet_ms=0: canary comparisons run during the load too (by default they wait for gaps in it).
    settings = gateway_settings(
        tmp_path, registry.root, f"sqlite:///{tmp_path / 'db.sqlite'}", rate_limit_burst=10_000, shadow_quiet_ms=0
    )
    with running_gateway(settings) as gw:
        keys = [create_key(gw.gateway.engine, f"client-{i}", "predict").secret for i in range(KEYS)]
        backend = gw.gateway.backend
        files = upload(photos, 1)
        outcomes: Counter[int | str] = Counter()
        stop = threading.Event()

        def load(worker: int) -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as client:
                i = worker
                while not stop.is_set():
                    response = client.post("/v1/predict", files=files, headers=bearer(keys[i % KEYS]))
                    outcomes[response.status_code if response.status_code != 200 else "ok"] += 1
                    i += 4

        def versions_seen(count: int = KEYS) -> list[int]:
            answers = []
            for key in keys[:count]:
                response = gw.client.post("/v1/predict", files=files, headers=bearer(key))
                assert response.status_code == 200, response.text
                answers.append(response.json()["predictions"][0]["model_version"])
            return answers

        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            assert set(versions_seen(20)) == {1}

            registry.promote("cats_dogs", 2, to="canary", canary_share=0.1, force=True)
            wait_until(lambda: backend.is_available(2) and gw.gateway.service.router.state().canary == 2)
            answers = versions_seen()
            canary = answers.count(2)
            assert 0.1 * KEYS - 3 * (KEYS * 0.09) ** 0.5 <= canary <= 0.1 * KEYS + 3 * (KEYS * 0.09) ** 0.5, canary
            assert versions_seen() == answers  # sticky: every key gets the same version again

            registry.promote("cats_dogs", 2, force=True)
            wait_until(lambda: set(versions_seen(20)) == {2})
            registry.rollback("cats_dogs")
            wait_until(lambda: set(versions_seen(20)) == {1})
            time.sleep(1)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert set(outcomes) == {"ok"} and outcomes["ok"] > 50, outcomes
        assert gw.metric("imgclf_gateway_routed_predictions_total", role="canary", version="2") >= canary * 2
        # Canary answers were compared with stable in the background (same weights: they agree).
        gw.gateway.service.shadow.drain()
        compared = gw.metric("imgclf_gateway_agreement_total", role="canary", version="2", agree="yes")
        assert compared > 0 and compared + gw.metric("imgclf_gateway_shadow_dropped_total") >= canary
        assert gw.metric("imgclf_gateway_agreement_total", role="canary", version="2", agree="no") == 0


def test_shadow_results_are_stored_never_returned(cats_dogs_registry, photos, tmp_path):
    from sqlalchemy import select

    from imgclf.storage.models import Prediction

    for version in (1, 2):
        shutil.copytree(cats_dogs_registry / "cats_dogs" / "1", tmp_path / "registry" / "cats_dogs" / str(version))
    registry = Registry(tmp_path / "registry")
    registry.promote("cats_dogs", 1, force=True)
    registry.label("cats_dogs", 2, "shadow")
    settings = gateway_settings(tmp_path, registry.root, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        wait_until(lambda: gw.gateway.service.router.shadow_version() == 2)
        key = gw.key()
        for _ in range(5):
            answer = gw.client.post("/v1/predict", files=upload(photos, 2), headers=bearer(key)).json()
            assert {p["model_version"] for p in answer["predictions"]} == {1}
        gw.gateway.service.shadow.drain()
        with gw.gateway.engine.connect() as connection:
            rows = list(connection.execute(select(Prediction.model_version, Prediction.role, Prediction.needs_review)))
        assert Counter((v, role) for v, role, _ in rows) == {(1, "stable"): 10, (2, "shadow"): 10}
        assert not any(needs for v, _, needs in rows if v == 2)
        same_weights = gw.metric("imgclf_gateway_agreement_total", version="2", role="shadow", agree="yes")
        assert same_weights == 10
        queue = gw.client.get("/v1/reviews", headers=bearer(gw.key("review"))).json()["items"]
        assert queue and all(item["model_version"] == 1 for item in queue)  # only answered predictions await review
