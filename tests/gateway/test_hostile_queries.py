"""Hostile query strings, paths and bodies (issue 17): each is a 4xx in the JSON error shape, never a
500 or a 503 blamed on the database, on SQLite and on PostgreSQL (which refuses NUL bytes and
checks int4 ranges), and the service stays up."""

from __future__ import annotations

import base64
import json

import pytest

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import assert_error, bearer, upload


def cursor(values: list) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


NUL = "a\u0000b"
HOSTILE_READS = [
    ("/v1/predictions/abc%00def", 422, "invalid_request"),
    ("/v1/predictions/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),  # decoded to a path no route has
    ("/v1/predictions?label=cats%00", 422, "invalid_request"),
    ("/v1/predictions?label=ca%0Ats", 422, "invalid_request"),
    (f"/v1/predictions?model_version={2**31}", 422, "invalid_request"),
    ("/v1/predictions?since=9999-12-31T23:59:59-14:00", 422, "invalid_request"),
    ("/v1/predictions?until=0001-01-01T00:00:00%2B14:00", 422, "invalid_request"),
    (f"/v1/predictions?cursor={cursor(['2026-01-01T00:00:00+00:00', NUL])}", 400, "invalid_cursor"),
    (f"/v1/predictions?cursor={cursor(['9999-12-31T23:59:59-14:00', 'a'])}", 400, "invalid_cursor"),
    (f"/v1/reviews?cursor={cursor([True, 'a'])}", 400, "invalid_cursor"),
    (f"/v1/reviews?cursor={cursor([1e400, 'a'])}", 400, "invalid_cursor"),
    (f"/v1/reviews?cursor={cursor([0.5, 12])}", 400, "invalid_cursor"),
    ("/v1/reviews?cursor=%00", 422, "invalid_request"),
]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_hostile_reads_and_reviews_are_client_errors(database, cats_dogs_registry, photos, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    with running_gateway(gateway_settings(tmp_path, cats_dogs_registry, url)) as gw:
        key = gw.key("predict,review")
        answer = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(key))
        prediction_id = answer.json()["predictions"][0]["id"]
        for path, status, code in HOSTILE_READS:
            assert_error(gw.client.get(path, headers=bearer(key)), status, code)
        for body in (
            {"label": "cats\u0000"},
            {"label": "cats\ndogs"},
            {"label": "ca\rts"},
            {"label": "dogs", "reviewer": "eve\u0000"},
            {"label": "dogs", "reviewer": "eve\u001b[31m"},
        ):
            assert_error(gw.client.post(f"/v1/reviews/{prediction_id}", json=body, headers=bearer(key)), 422,
                         "invalid_request")  # fmt: skip
        assert_error(gw.client.post("/v1/reviews/abc%00", json={"label": "dogs"}, headers=bearer(key)), 422,
                     "invalid_request")  # fmt: skip
        # Still up, nothing recorded from the refused reviews, and the plain requests work.
        assert gw.client.get("/healthz").status_code == 200
        record = gw.client.get(f"/v1/predictions/{prediction_id}", headers=bearer(key)).json()
        assert record["review"] is None
        ok = gw.client.post(f"/v1/reviews/{prediction_id}", json={"label": "dogs"}, headers=bearer(key))
        assert ok.status_code == 200 and ok.json()["review"]["label"] == "dogs"
        assert gw.metric("imgclf_gateway_requests_total", status="500") == 0
        assert gw.metric("imgclf_gateway_requests_total", status="503") == 0
