"""A client that hangs up in the middle of its upload (issue 17) is counted as 499 (client closed
request, as nginx names it) and logged as such, not as a 500 with a traceback that feeds the 5xx alert."""

from __future__ import annotations

import logging
import socket
import time

from tests.gateway.conftest import gateway_settings, running_gateway


def test_a_client_hanging_up_mid_body_is_a_499_not_a_500(cats_dogs_registry, photos, tmp_path, caplog):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        key = gw.key()
        name, data = photos[0]
        body = (
            b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--xyz--\r\n"
        )
        host, port = gw.url.removeprefix("http://").split(":")
        caplog.set_level(logging.INFO)
        for _ in range(3):
            with socket.create_connection((host, int(port))) as client:
                client.sendall(
                    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n".encode()
                    + b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
                    + body[: len(body) // 2]
                )
                time.sleep(0.2)
        deadline = time.monotonic() + 10
        while gw.metric("imgclf_gateway_requests_total", status="499") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.metric("imgclf_gateway_requests_total", route="/v1/predict", status="499") == 3
        assert gw.metric("imgclf_gateway_requests_total", status="500") == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
        assert any("client closed" in r.getMessage() for r in caplog.records)
        assert gw.client.get("/healthz").status_code == 200
