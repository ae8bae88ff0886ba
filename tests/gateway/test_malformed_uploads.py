"""Hostile and broken uploads over HTTP: each a 4xx in the one error shape; the gateway stays healthy."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgclf.gateway.validation import UploadLimits, validate_image
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.gateway.malformed import jpeg_with_broken_scan, malformed_corpus
from tests.helpers import assert_error, bearer, upload

BODY_LIMIT = 300_000


@pytest.fixture(scope="module")
def gw(cats_dogs_registry, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("malformed")
    limits = {"max_request_bytes": BODY_LIMIT, "max_images_per_request": 4}
    settings = gateway_settings(tmp, cats_dogs_registry, f"sqlite:///{tmp / 'db.sqlite'}", **limits)
    with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def key(gw) -> str:  # type: ignore[no-untyped-def]
    return gw.key()


@pytest.mark.parametrize("name", list(malformed_corpus()))
def test_malformed_file_is_refused_with_its_reason(gw, key, name, photos):
    data, code = malformed_corpus()[name]
    files = [*upload(photos, 1), ("files", ("upload.jpg", data, "image/jpeg"))]
    error = assert_error(gw.client.post("/v1/predict", files=files, headers=bearer(key)), _status(code), code)
    assert error["message"].startswith("image 1 (upload.jpg): ")  # names the bad one
    as_base64 = base64.b64encode(data).decode()
    same_as_json = gw.client.post("/v1/predict", json={"images": [as_base64]}, headers=bearer(key))
    assert_error(same_as_json, _status(code), code)


def _status(code: str) -> int:
    return {"unsupported_format": 415, "image_too_large": 422, "too_many_frames": 422}.get(code, 400)


def test_request_shape_errors(gw, key, photos):
    post = gw.client.post
    big = b"\xff" * (BODY_LIMIT + 1)
    assert_error(post("/v1/predict", files=[("files", ("a.jpg", big))], headers=bearer(key)), 413, "request_too_large")

    def chunked():  # type: ignore[no-untyped-def]
        for _ in range(40):  # no Content-Length: refused while streaming
            yield b"x" * 10_000

    streamed = post("/v1/predict", content=chunked(), headers={**bearer(key), "Content-Type": "application/json"})
    assert_error(streamed, 413, "request_too_large")
    assert_error(post("/v1/predict", json={"images": ["%%%not base64%%%"]}, headers=bearer(key)), 400, "invalid_base64")
    assert_error(post("/v1/predict", json={"image": ["aGVsbG8="]}, headers=bearer(key)), 400, "invalid_json")
    assert_error(post("/v1/predict", json={"images": []}, headers=bearer(key)), 400, "invalid_json")
    assert_error(post("/v1/predict", content=b"{not json", headers={**bearer(key), "Content-Type": "application/json"}),
                 400, "invalid_json")  # fmt: skip
    wrong_field = [("photo", ("a.jpg", photos[0][1], "image/jpeg"))]
    assert_error(post("/v1/predict", files=wrong_field, headers=bearer(key)), 400, "unknown_field")
    text_field = post("/v1/predict", data={"files": "hello"}, files=upload(photos, 1), headers=bearer(key))
    assert_error(text_field, 400, "not_a_file")
    form = post("/v1/predict", data={"files": "hello"}, headers=bearer(key))  # urlencoded, no files
    assert_error(form, 415, "unsupported_media_type")
    assert_error(post("/v1/predict", content=photos[0][1], headers={**bearer(key), "Content-Type": "image/jpeg"}),
                 415, "unsupported_media_type")  # fmt: skip
    assert_error(post("/v1/predict", json={"images": ["aGVsbG8="] * 5}, headers=bearer(key)), 400, "too_many_images")
    assert_error(post("/v1/predict", files=upload(photos * 2, 6), headers=bearer(key)), 400, "too_many_images")
    cut_short = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n' + photos[0][1][:500]
    multipart = {**bearer(key), "Content-Type": "multipart/form-data; boundary=b"}
    assert_error(post("/v1/predict", content=cut_short, headers=multipart), 400, "malformed_multipart")
    assert_error(post("/v1/predict", params={"version": "x"}, files=upload(photos, 1), headers=bearer(key)),
                 422, "invalid_request")  # fmt: skip
    assert_error(gw.client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(gw.client.delete("/v1/predict"), 405, "method_not_allowed")


def test_a_whole_file_with_broken_data_is_refused_by_the_model_alone(gw, key, photos):
    """Validation does not decode; the model's decode refuses the image, and only its request fails."""
    broken = jpeg_with_broken_scan(photos[0][1])
    assert validate_image(broken, UploadLimits.from_settings()).format == "JPEG"  # structurally whole
    files = [*upload(photos, 1), ("files", ("broken.jpg", broken, "image/jpeg"))]
    error = assert_error(gw.client.post("/v1/predict", files=files, headers=bearer(key)), 400, "corrupt_image")
    prefix = "image 1 (broken.jpg): the image does not decode: "  # then TensorFlow's reason, one line
    assert error["message"].startswith(prefix) and "Invalid JPEG data" in error["message"], error["message"]
    assert "\n" not in error["message"] and "node" not in error["message"]

    def send(index: int) -> int:  # concurrent requests share batches with the broken one
        data = broken if index % 4 == 0 else photos[index % len(photos)][1]
        files = [("files", (f"{index}.jpg", data, "image/jpeg"))]
        return gw.client.post("/v1/predict", files=files, headers=bearer(key)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(24)))
    assert statuses == [400 if index % 4 == 0 else 200 for index in range(24)]


def test_still_healthy_and_counting_after_the_corpus(gw, key, photos):
    assert gw.client.get("/healthz").status_code == 200
    assert gw.client.get("/readyz").status_code == 200
    assert gw.client.get("/docs").status_code == 200  # OpenAPI docs
    good = gw.client.post("/v1/predict", files=upload(photos, 2), headers=bearer(key))
    assert good.status_code == 200 and len(good.json()["predictions"]) == 2
    assert gw.metric("imgclf_gateway_upload_rejections_total", code="truncated_image") >= 1
    assert gw.metric("imgclf_gateway_requests_total", status="413") >= 2  # refused before routing, or while streaming
