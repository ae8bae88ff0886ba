"""Upload validation refuses every malformed upload with a stable code, and accepts real images."""

from __future__ import annotations

import pytest

from imgclf.errors import UploadError
from imgclf.gateway.validation import UploadLimits, validate_image
from tests.conftest import encode, random_pixels
from tests.gateway.malformed import malformed_corpus

CORPUS = malformed_corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_uploads_are_refused_with_a_stable_code(name):
    data, code = CORPUS[name]
    with pytest.raises(UploadError) as caught:
        validate_image(data, UploadLimits.from_settings())
    assert caught.value.code == code, caught.value.message
    assert 400 <= caught.value.status < 500


def test_limits_are_configurable():
    png = encode(random_pixels(60, 80), "PNG")
    assert validate_image(png, UploadLimits.from_settings()).width == 80
    with pytest.raises(UploadError) as caught:
        validate_image(png, UploadLimits.from_settings(max_bytes=100))
    assert (caught.value.code, caught.value.status) == ("file_too_large", 413)
    with pytest.raises(UploadError) as caught:
        validate_image(png, UploadLimits.from_settings(max_side=64))
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP"])
def test_real_images_pass(fmt):
    upload = validate_image(encode(random_pixels(40, 56), fmt), UploadLimits.from_settings())
    assert (upload.format, upload.width, upload.height, upload.frames) == (fmt, 56, 40, 1)
    assert len(upload.sha256) == 64


def test_real_photos_pass(cats_dogs_dir):
    for path in sorted((cats_dogs_dir / "validation").rglob("*.jpg"))[:5]:
        assert validate_image(path.read_bytes(), UploadLimits.from_settings()).format == "JPEG"
