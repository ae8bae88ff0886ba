"""The gateway's multipart splitter agrees with Starlette's parser and refuses malformed bodies clearly."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from imgclf.errors import UploadError
from imgclf.gateway.multipart import FormPart, parse_form_data


def encoded(files: list, data: dict | None = None) -> tuple[bytes, str]:  # type: ignore[type-arg]
    """A body and Content-Type as httpx (the client most Python callers use) sends them."""
    request = httpx.Request("POST", "http://x/v1/predict", files=files, data=data)
    return request.read(), request.headers["content-type"]


def starlette_parts(body: bytes, content_type: str) -> list[FormPart]:
    async def parse() -> list[FormPart]:
        async def stream():  # type: ignore[no-untyped-def]
            for start in range(0, len(body), 7_000):  # chunks, as they arrive from a socket
                yield body[start : start + 7_000]
            yield b""

        form = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
        parts = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                parts.append(FormPart(name, value.filename, await value.read()))
            else:
                parts.append(FormPart(name, None, value.encode()))
        return parts

    return asyncio.run(parse())


def test_same_parts_as_starlette(photos):
    rng = random.Random(0)
    noise = bytes(rng.getrandbits(8) for _ in range(30_000))
    cases = [
        [("files", (name, data, "image/jpeg")) for name, data in photos[:3]],
        [("files", ('a "quoted"; name.jpg', photos[0][1], "image/jpeg"))],
        [("files", ("chat-été.jpg", photos[1][1], "image/jpeg"))],
        [("files", ("empty.jpg", b"", "image/jpeg"))],
        [("file", ("crlf.bin", b"\r\n--\r\n\r\n--x\r\n", "application/octet-stream"))],
        [("image", ("noise.bin", noise, "application/octet-stream"))],
    ]
    for files in cases:
        body, content_type = encoded(files)
        assert parse_form_data(body, content_type, max_parts=16) == starlette_parts(body, content_type)
    body, content_type = encoded(cases[0], data={"note": "text field"})
    parts = parse_form_data(body, content_type, max_parts=16)
    assert parts == starlette_parts(body, content_type)
    assert [(p.name, p.filename is None) for p in parts] == [("note", True)] + [("files", False)] * 3


def test_boundary_text_inside_data_is_data():
    body = (
        b"preamble to ignore\r\n--b0und\r\n"
        b'Content-Disposition: form-data; name="files"; filename="x.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
        b"--b0und not at a line start--b0und\r\n--b0un\r\n"
        b"\r\n--b0und--\r\nepilogue"
    )
    [part] = parse_form_data(body, "multipart/form-data; boundary=b0und", max_parts=4)
    assert part == FormPart("files", "x.jpg", b"--b0und not at a line start--b0und\r\n--b0un\r\n")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "no name"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "no Content-Dispo"),
        (b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nx', "multipart/form-data; boundary=b", "ends before"),
        (b'--b\r\nContent-Disposition: form-data; name="f"', "multipart/form-data; boundary=b", "headers do not end"),
        (b"--b", "multipart/form-data; boundary=b", "does not end with CRLF"),
        (b"no delimiter at all", "multipart/form-data; boundary=b", "no part starts"),
        (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data", "no boundary"),
    ],
)
def test_malformed_bodies_are_named(body, content_type, message):
    with pytest.raises(UploadError) as raised:
        parse_form_data(body, content_type, max_parts=4)
    assert raised.value.code == "malformed_multipart" and message in raised.value.message, raised.value.message


def test_too_many_parts():
    body, content_type = encoded([("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(5)])
    assert len(parse_form_data(body, content_type, max_parts=5)) == 5
    with pytest.raises(UploadError) as raised:
        parse_form_data(body, content_type, max_parts=4)
    assert raised.value.code == "too_many_images"
