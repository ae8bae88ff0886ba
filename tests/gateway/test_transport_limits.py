"""Connections that try to hold the gateway's memory or sockets (issue 17): oversized request heads
(431), bodies that stop arriving (408), and more upload bytes in flight than the budget (503 with
Retry-After, before the body is read). The gateway keeps serving throughout."""

from __future__ import annotations

import socket
import time

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import response_head


def _connect(gw) -> socket.socket:  # type: ignore[no-untyped-def]
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock


def _head(length: int, key: str) -> bytes:
    return (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        + f"Content-Length: {length}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )


def test_oversized_heads_stalled_bodies_and_the_upload_budget(cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                body_read_timeout_seconds=1, max_bytes_in_flight=300_000,
                                max_request_bytes=250_000)  # fmt: skip
    with running_gateway(settings) as gw:
        key = gw.key()
        # 1. A request head of 1 MB (one header): refused once it passes the limit, connection closed.
        with _connect(gw) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(16):
                    sock.sendall(b"a" * 65536)
            except OSError:
                pass  # closed by the server while we were still sending: that is the point
            status, _ = response_head(sock)
        assert status == 431

        # 2. A body that stops arriving: 408 after the read timeout, not a connection held forever.
        with _connect(gw) as sock:
            sock.sendall(_head(100_000, key) + b"--xyz\r\n" + b"a" * 1000)
            started = time.monotonic()
            status, raw = response_head(sock)
            assert status == 408 and b"request_timeout" in raw + sock.recv(65536)
            assert time.monotonic() - started < 5

        # 3. The upload budget: a held 200 kB upload leaves room for no second one of 200 kB.
        with _connect(gw) as holder:
            holder.sendall(_head(200_000, key) + b"--xyz\r\n")  # declared, then slow
            time.sleep(0.2)
            with _connect(gw) as second:
                second.sendall(_head(200_000, key))
                status, raw = response_head(second)
                assert status == 503 and b"retry-after: 1" in raw.lower()
            with _connect(gw) as small:  # a small one still fits
                small.sendall(_head(50_000, key) + b"x" * 50_000)
                assert response_head(small)[0] == 400  # admitted, read in full, then refused as no multipart body
        assert gw.client.get("/healthz").status_code == 200
        assert gw.metric("imgclf_gateway_requests_total", status="503") >= 1
