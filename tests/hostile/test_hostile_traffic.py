"""The hostile probes as one repeatable run (issue 17): well-behaved clients keep classifying photos
while hostile clients send, in turn, every file of the malformed corpus, tampered queries and
review bodies, oversized request heads, bodies that stop arriving and bodies past the limit.

Every well-behaved request must be answered 200; every hostile one a 4xx in the JSON error shape
(or 431 / 408 from the transport limits); no 5xx at all; the gateway alive at the end. The run is
bounded: ``IMGCLF_HOSTILE_SECONDS`` (default 6) of traffic.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.gateway.malformed import jpeg_with_broken_scan, malformed_corpus
from tests.helpers import bearer, response_head, upload

SECONDS = float(os.environ.get("IMGCLF_HOSTILE_SECONDS", "6"))


def _cursor(values: list) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def hostile_http_requests(key: str, prediction_id: str) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    """(method, path, httpx keyword arguments) of requests that must each get a 4xx."""
    auth = bearer(key)
    requests: list[tuple[str, str, dict]] = []  # type: ignore[type-arg]
    for name, (data, _) in malformed_corpus().items():
        requests.append(("POST", "/v1/predict", {"files": [("files", (f"{name}.jpg", data))], "headers": auth}))
    for path in (
        "/v1/predictions/abc%00def",
        "/v1/predictions?label=cats%00",
        f"/v1/predictions?model_version={2**31}",
        "/v1/predictions?since=9999-12-31T23:59:59-14:00",
        f"/v1/reviews?cursor={_cursor([True, 'a'])}",
        f"/v1/predictions?cursor={_cursor(['2026-01-01T00:00:00', 'x' * 500])}",
        "/v1/predictions?cursor=%27%20OR%201%3D1--",
        "/v1/predictions/..%2F..%2Fetc%2Fpasswd",
    ):
        requests.append(("GET", path, {"headers": auth}))
    for body in ({"label": "cats\ndogs"}, {"label": "x" * 201}, {"label": "dogs", "reviewer": "\u0000"}, {"lbl": 1}):
        requests.append(("POST", f"/v1/reviews/{prediction_id}", {"json": body, "headers": auth}))
    requests.append(("POST", "/v1/predict", {"json": {"images": ["not base64!"]}, "headers": auth}))
    requests.append(("POST", "/v1/predict", {"files": upload([("a.jpg", b"x")], 1), "headers": bearer("ik_forged")}))
    return requests


def raw_attacks(url: str, key: str) -> list[int]:
    """A 100 kB request head, a body that stops, a body past the size limit: their status codes.

    (The upload budget, which needs uploads held at the same time, is tested in
    tests/gateway/test_transport_limits.py.)"""
    host, port = url.removeprefix("http://").split(":")
    statuses = []
    head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000,
        (head + "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 90000\r\n\r\n--b\r\n").encode(),
        (head + "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000\r\n\r\n").encode(),
    ):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            with contextlib.suppress(OSError):  # the server may close while we still send
                sock.sendall(request)
            statuses.append(response_head(sock)[0])
    return statuses


@pytest.mark.slow
def test_hostile_traffic_beside_real_clients(cats_dogs_registry, photos, tmp_path):
    settings = gateway_settings(
        tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}", rate_limit_burst=1_000_000,
        max_request_bytes=4_000_000, max_bytes_in_flight=4_000_000, body_read_timeout_seconds=1,
    )  # fmt: skip
    with running_gateway(settings) as gw:
        key = gw.key("predict,review")
        first = gw.client.post("/v1/predict", files=upload(photos, 1), headers=bearer(key)).json()
        hostile = hostile_http_requests(key, first["predictions"][0]["id"])
        hostile.append(("POST", "/v1/predict", {"files": upload([("scan.jpg", jpeg_with_broken_scan(photos[0][1]))],
                                                                1), "headers": bearer(key)}))  # fmt: skip
        outcomes: Counter[str] = Counter()
        wrong: list[str] = []
        stop = threading.Event()

        def real_client(worker: int) -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as http:
                i = worker
                while not stop.is_set():
                    response = http.post("/v1/predict", files=upload(photos[i % len(photos) :], 1), headers=bearer(key))
                    outcomes["real"] += 1
                    if response.status_code != 200:
                        wrong.append(f"real {response.status_code} {response.text[:120]}")
                    i += 1

        def hostile_client(worker: int) -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as http:
                i = worker
                while not stop.is_set():
                    method, path, kwargs = hostile[i % len(hostile)]
                    response = http.request(method, path, **kwargs)
                    outcomes["hostile"] += 1
                    body = response.json()
                    if not 400 <= response.status_code < 500 or set(body) != {"error"}:
                        wrong.append(f"hostile {method} {path} -> {response.status_code} {response.text[:120]}")
                    i += 1

        threads = [threading.Thread(target=real_client, args=(w,)) for w in range(2)]
        threads += [threading.Thread(target=hostile_client, args=(w,)) for w in range(2)]
        for thread in threads:
            thread.start()
        raw: list[int] = []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            raw += raw_attacks(gw.url, key)
        stop.set()
        for thread in threads:
            thread.join(60)
        print(f"hostile run: {dict(outcomes)}, raw attacks {Counter(raw)}")
        assert not wrong, wrong[:5]
        assert outcomes["real"] > 10 and outcomes["hostile"] >= len(hostile)
        assert set(raw) == {431, 408, 413}, Counter(raw)
        assert gw.metric("imgclf_gateway_requests_total", status="500") == 0
        assert gw.client.get("/healthz").status_code == 200
