"""The gateway end to end over real HTTP: real photos, a real export, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from imgclf.data.sources import load_dataset
from imgclf.export.inference import ExportedModel
from imgclf.gateway.api_keys import revoke_key
from imgclf.gateway.backends import RestBackend
from imgclf.logs import JsonFormatter
from imgclf.retraining.reviewed import export_reviews
from imgclf.storage.image_store import ImageStore
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import assert_error, bearer, upload


def test_predict_answers_match_the_export_and_are_logged(cats_dogs_registry, photos, database_url, tmp_path):
    offline = ExportedModel.load(cats_dogs_registry / "cats_dogs").predict_bytes([d for _, d in photos])
    settings = gateway_settings(tmp_path, cats_dogs_registry, database_url)
    with running_gateway(settings) as gw:
        key = gw.key("predict")
        response = gw.client.post("/v1/predict", files=upload(photos), headers={**bearer(key), "X-Request-ID": "abc-1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_id"] == response.headers["x-request-id"] == "abc-1"
        assert (body["model_name"], body["model_version"]) == ("cats_dogs", 1)
        answers = body["predictions"]
        assert len(answers) == len(photos)
        scores = np.array([[a["scores"]["cats"], a["scores"]["dogs"]] for a in answers])
        np.testing.assert_allclose(scores, offline["scores"], atol=1e-5)
        assert [a["label"] for a in answers] == [x.decode() for x in offline["labels"]]
        for answer, (_, data) in zip(answers, photos, strict=True):
            assert answer["confidence"] == answer["scores"][answer["label"]]
            assert answer["image"]["format"] == "JPEG" and answer["image"]["bytes"] == len(data)
            margin = abs(answer["scores"]["cats"] - answer["scores"]["dogs"])
            uncertain = answer["confidence"] < 0.7 or margin < 0.2
            reason = answer["review_reason"]
            assert answer["needs_review"] == (uncertain or reason in ("audit", "out_of_distribution"))
            assert reason == ("uncertain" if uncertain and reason != "audit" else reason)

        # The same images as JSON base64 (standard and URL-safe alphabets) give the same answers
        # (to float rounding: a batch of another size may sum in another order).
        images = [base64.b64encode(d).decode() for _, d in photos[:2]] + [
            base64.urlsafe_b64encode(photos[2][1]).decode()
        ]
        as_json = gw.client.post("/v1/predict", json={"images": images}, headers={"X-API-Key": key})
        assert as_json.status_code == 200, as_json.text
        again = as_json.json()["predictions"]
        assert [a["label"] for a in again] == [a["label"] for a in answers[:3]]
        np.testing.assert_allclose(
            [list(a["scores"].values()) for a in again], [list(a["scores"].values()) for a in answers[:3]], atol=1e-5
        )

        # Every answered image is in the log and in the image store.
        stored = gw.client.get(f"/v1/predictions/{answers[0]['id']}", headers=bearer(key)).json()
        assert stored["label"] == answers[0]["label"] and stored["request_id"] == "abc-1"
        assert stored["review_status"] in ("pending", "not_needed") and stored["review"] is None
        assert datetime.fromisoformat(stored["created_at"]).tzinfo is not None
        listed = gw.client.get("/v1/predictions", params={"limit": 100}, headers=bearer(key)).json()
        assert len(listed["items"]) == len(photos) + 3 and listed["next_cursor"] is None
        assert ImageStore(tmp_path / "images").contains(answers[0]["image"]["sha256"])
        assert gw.metric("imgclf_gateway_predictions_total", model="cats_dogs", version="1") == len(photos) + 3
        assert gw.metric("imgclf_gateway_requests_total", route="/v1/predict", status="200") == 2
        # The latency histogram holds the requests' real durations (seconds, not the process's uptime).
        predict_seconds = gw.metric("imgclf_gateway_request_duration_seconds_sum", route="/v1/predict")
        assert 0 < predict_seconds < 60 and gw.metric("imgclf_gateway_request_duration_seconds_count") >= 2


def test_keys_scopes_and_revocation(cats_dogs_registry, photos, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        predict_key, review_key = gw.key("predict", "app"), gw.key("review", "ana")
        missing = gw.client.post("/v1/predict", files=upload(photos, 1))
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert_error(
            gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer("ik_nope_x")), 401, "unauthorized"
        )
        assert_error(
            gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(review_key)), 403, "forbidden"
        )
        assert_error(gw.client.get("/v1/reviews", headers=bearer(predict_key)), 403, "forbidden")

        mine = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(predict_key)).json()
        other_key = gw.key("predict", "other app")
        theirs = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(other_key)).json()
        # A predict-only key sees its own predictions; a review key sees everyone's.
        own = gw.client.get("/v1/predictions", headers=bearer(predict_key)).json()["items"]
        assert [p["id"] for p in own] == [mine["predictions"][0]["id"]]
        not_visible = gw.client.get(f"/v1/predictions/{theirs['predictions'][0]['id']}", headers=bearer(predict_key))
        assert_error(not_visible, 404, "not_found")
        assert len(gw.client.get("/v1/predictions", headers=bearer(review_key)).json()["items"]) == 2

        revoke_key(gw.gateway.engine, predict_key[:11])
        assert_error(
            gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(predict_key)), 401, "unauthorized"
        )


def test_log_lines_from_request_threads_carry_the_request_id(cats_dogs_registry, photos, tmp_path):
    """Work done for a request in a worker thread logs with that request's id (context copied)."""
    blocked = tmp_path / "a_file_not_a_folder"
    blocked.write_bytes(b"")
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = settings.model_copy(update={"image_store_dir": blocked})
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Collect()
    service_log = logging.getLogger("imgclf.gateway.service")
    service_log.addHandler(handler)
    try:
        with running_gateway(settings) as gw:
            key = gw.key()
            answered = gw.client.post(
                "/v1/predict", files=upload(photos, 1), headers={**bearer(key), "X-Request-ID": "req-42"}
            )
    finally:
        service_log.removeHandler(handler)
    assert answered.status_code == 200, answered.text  # the answer matters more than the stored copy
    not_stored = [line for line in lines if "not stored" in line["message"]]
    assert not_stored and all(line["request_id"] == "req-42" for line in not_stored), lines


def test_cached_keys_get_the_same_answers(cats_dogs_registry, photos, tmp_path):
    """With the key cache on, known keys are checked without the database (in the event loop)."""
    settings = gateway_settings(
        tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}", auth_cache_seconds=60
    )
    with running_gateway(settings) as gw:
        predict_key, review_key = gw.key("predict", "app"), gw.key("review", "ana")
        for _ in range(2):  # the first request fills the cache, the second is answered from it
            assert_error(
                gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer("ik_nope_x")), 401, "unauthorized"
            )
            assert_error(
                gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(review_key)), 403, "forbidden"
            )
            answered = gw.client.post(
                "/v1/predict", files=upload(photos, 1), headers={"authorization": f"bearer {predict_key}"}
            )
            assert answered.status_code == 200, answered.text
        assert_error(
            gw.client.post("/v1/predict", files=upload(photos, 1), headers={"Authorization": predict_key}),
            401,
            "unauthorized",
        )


@pytest.mark.parametrize("auth_cache_seconds", [0, 60])
def test_rate_limit_answers_429_with_retry_after(cats_dogs_registry, photos, tmp_path, auth_cache_seconds):
    settings = gateway_settings(
        tmp_path,
        cats_dogs_registry,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        rate_limit_burst=3,
        rate_limit_per_minute=1,
        auth_cache_seconds=auth_cache_seconds,
    )
    with running_gateway(settings) as gw:
        key, other = gw.key(), gw.key()
        statuses = [gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(key)) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert_error(statuses[-1], 429, "rate_limited")
        assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60
        # Budgets are per key.
        assert gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(other)).status_code == 200
        assert gw.metric("imgclf_gateway_rate_limited_total") == 1


def test_review_queue_new_class_and_manifest_export(cats_dogs_registry, photos, database_url, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, database_url, review_confidence_threshold=1.0)
    with running_gateway(settings) as gw:
        app_key, reviewer_key = gw.key("predict"), gw.key("review", "ana")
        answers = gw.client.post("/v1/predict", files=upload(photos), headers=bearer(app_key)).json()["predictions"]
        assert all(a["needs_review"] for a in answers)  # threshold 1.0: everything is uncertain

        pending, cursor = [], None
        while True:  # two per page, least confident first
            params = {"status": "pending", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = gw.client.get("/v1/reviews", params=params, headers=bearer(reviewer_key)).json()
            pending += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(p["id"] for p in pending) == sorted(a["id"] for a in answers)
        confidences = [p["confidence"] for p in pending]
        assert confidences == sorted(confidences)

        first, second = pending[0]["id"], pending[1]["id"]
        reviewed = gw.client.post(f"/v1/reviews/{first}", json={"label": "dogs"}, headers=bearer(reviewer_key))
        assert reviewed.status_code == 200, reviewed.text
        review = reviewed.json()["review"]
        assert review["label"] == "dogs" and review["reviewer"] == "ana" and review["new_class"] is False
        fox = gw.client.post(
            f"/v1/reviews/{second}", json={"label": " foxes ", "reviewer": "bo"}, headers=bearer(reviewer_key)
        ).json()
        assert fox["review"] == {**fox["review"], "label": "foxes", "reviewer": "bo", "new_class": True}
        assert fox["review_status"] == "reviewed"

        left = gw.client.get("/v1/reviews", params={"limit": 100}, headers=bearer(reviewer_key)).json()["items"]
        assert len(left) == len(photos) - 2
        done = gw.client.get("/v1/reviews", params={"status": "reviewed"}, headers=bearer(reviewer_key)).json()
        assert [p["id"] for p in done["items"]] == [second, first]  # latest review first
        assert_error(
            gw.client.post("/v1/reviews/nope", json={"label": "x"}, headers=bearer(reviewer_key)), 404, "not_found"
        )
        assert_error(
            gw.client.post(f"/v1/reviews/{first}", json={"label": ""}, headers=bearer(reviewer_key)),
            422,
            "invalid_request",
        )

        summary = export_reviews(gw.gateway.engine, ImageStore(tmp_path / "images"), tmp_path / "out" / "reviewed.csv")
    assert (summary.rows, summary.labels, summary.missing_images) == (2, {"dogs": 1, "foxes": 1}, 0)
    dataset = load_dataset(tmp_path / "out" / "reviewed.csv")  # what imgclf train reads
    by_label = {s.label: s.path.read_bytes() for s in dataset.samples}
    photo_bytes = {a["id"]: d for a, (_, d) in zip(answers, photos, strict=True)}
    assert by_label == {"dogs": photo_bytes[first], "foxes": photo_bytes[second]}


def test_listing_filters_and_cursor_pagination(cats_dogs_registry, photos, database_url, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, database_url)
    with running_gateway(settings) as gw:
        key = gw.key("predict,review")
        before = datetime.now(UTC) - timedelta(seconds=1)
        for start in range(0, len(photos), 2):
            gw.client.post("/v1/predict", files=upload(photos[start : start + 2]), headers=bearer(key))
        everything = gw.client.get("/v1/predictions", params={"limit": 500}, headers=bearer(key)).json()["items"]
        assert len(everything) == len(photos)
        created = [p["created_at"] for p in everything]
        assert created == sorted(created, reverse=True)

        pages, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = gw.client.get("/v1/predictions", params=params, headers=bearer(key)).json()
            pages.append([p["id"] for p in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 2]
        assert sum(pages, []) == [p["id"] for p in everything]

        def ids(**params) -> set[str]:  # type: ignore[no-untyped-def]
            found = gw.client.get("/v1/predictions", params=params, headers=bearer(key))
            assert found.status_code == 200, found.text
            return {p["id"] for p in found.json()["items"]}

        label = everything[0]["label"]
        assert ids(label=label) == {p["id"] for p in everything if p["label"] == label}
        middle = sorted(p["confidence"] for p in everything)[len(everything) // 2]
        assert ids(min_confidence=middle) == {p["id"] for p in everything if p["confidence"] >= middle}
        assert ids(max_confidence=middle) == {p["id"] for p in everything if p["confidence"] <= middle}
        assert ids(model_version=1) == {p["id"] for p in everything} and ids(model_version=2) == set()
        pending = {p["id"] for p in everything if p["needs_review"]}
        assert ids(review_status="pending") == pending
        assert ids(review_status="not_needed") == {p["id"] for p in everything} - pending
        assert ids(since=before.isoformat()) == {p["id"] for p in everything}
        assert ids(until=before.isoformat()) == set()
        assert ids(since=(before + timedelta(hours=1)).isoformat()) == set()
        assert_error(
            gw.client.get("/v1/predictions", params={"cursor": "garbage"}, headers=bearer(key)), 400, "invalid_cursor"
        )
        assert_error(gw.client.get("/v1/predictions", params={"limit": 0}, headers=bearer(key)), 422, "invalid_request")


def test_version_selection_and_unknown_version(cats_dogs_registry, photos, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        key = gw.key()
        ok = gw.client.post("/v1/predict", params={"version": 1}, files=upload(photos, 1), headers=bearer(key))
        assert ok.status_code == 200 and ok.json()["model_version"] == 1
        missing = gw.client.post("/v1/predict", params={"version": 7}, files=upload(photos, 1), headers=bearer(key))
        assert_error(missing, 404, "model_version_not_found")
        both = gw.client.post(
            "/v1/predict", params={"version": 1, "label": "stable"}, files=upload(photos, 1), headers=bearer(key)
        )
        assert_error(both, 400, "bad_request")


def test_backend_down_is_503_with_retry_after_and_never_500(cats_dogs_registry, photos, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings, backend=RestBackend("http://127.0.0.1:1", "cats_dogs", timeout=2)) as gw:
        key = gw.key()
        down = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(key))
        assert_error(down, 503, "model_unavailable")
        assert down.headers["retry-after"] == "5"
        ready = gw.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["model"] != "ok"
        assert ready.json()["checks"]["database"] == "ok"
        assert gw.client.get("/healthz").json() == {"status": "ok"}
        assert gw.client.get("/v1/predictions", headers=bearer(gw.key("review"))).json()["items"] == []


@pytest.mark.parametrize("backend_kind", ["http", "grpc", "v2+http", "v2+grpc"])
def test_remote_model_server_backend(cats_dogs_registry, photos, tmp_path, backend_kind):
    """The gateway in front of ``imgclf serve`` gives the local backend's answers, over TF Serving's protocol
    and over the Open Inference Protocol."""
    from imgclf.gateway.backends import create_backend
    from tests.serving.conftest import running_server

    offline = ExportedModel.load(cats_dogs_registry / "cats_dogs").predict_bytes([d for _, d in photos])["scores"]
    base = cats_dogs_registry / "cats_dogs"
    with running_server(model_name="cats_dogs", model_base_path=base, enable_batching=True) as server:
        port = server.server.rest_port if backend_kind.endswith("http") else server.server.grpc_port
        backend = create_backend(f"{backend_kind}://127.0.0.1:{port}", cats_dogs_registry, "cats_dogs")
        settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
        with running_gateway(settings, backend=backend) as gw:
            assert gw.client.get("/readyz").status_code == 200
            answer = gw.client.post("/v1/predict", files=upload(photos), headers=bearer(gw.key()))
            assert answer.status_code == 200, answer.text
            scores = [[a["scores"]["cats"], a["scores"]["dogs"]] for a in answer.json()["predictions"]]
            np.testing.assert_allclose(scores, offline, atol=1e-5)
            assert answer.json()["model_version"] == 1


def test_retention_prunes_old_unreviewed_images_only(cats_dogs_registry, photos, tmp_path):
    import os
    import time

    from imgclf.gateway.retention import prune_images
    from imgclf.storage.predictions import record_review

    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        answers = gw.client.post("/v1/predict", files=upload(photos, 3), headers=bearer(gw.key())).json()
        engine = gw.gateway.engine
        store = ImageStore(tmp_path / "images")
        digests = [a["image"]["sha256"] for a in answers["predictions"]]
        record_review(engine, answers["predictions"][0]["id"], "cats", "ana")
        old = time.time() - 100 * 86400
        for digest in digests[:2]:  # the reviewed one and one unreviewed one are 100 days old
            os.utime(store.path(digest), (old, old))
        assert prune_images(engine, store, older_than_days=90) == 1
        assert [store.contains(d) for d in digests] == [True, False, True]
