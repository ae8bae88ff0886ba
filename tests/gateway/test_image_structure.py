"""Upload validation knows a whole file from a cut one without decoding it."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from imgclf.errors import UploadError
from imgclf.gateway.image_structure import check_structure, declared_size
from imgclf.gateway.validation import UploadLimits, validate_image
from tests.conftest import encode, random_pixels

FORMATS = {
    "baseline JPEG": ("JPEG", {}),
    "progressive JPEG": ("JPEG", {"progressive": True}),
    "PNG": ("PNG", {}),
    "GIF": ("GIF", {}),
    "WebP": ("WEBP", {}),
}


def _file(name: str) -> tuple[str, bytes]:
    fmt, options = FORMATS[name]
    return fmt, encode(random_pixels(120, 160, seed=3), fmt, **options)


@pytest.mark.parametrize("name", FORMATS)
def test_whole_files_pass_and_files_cut_anywhere_after_the_header_are_refused(name):
    fmt, data = _file(name)
    assert check_structure(data, fmt) is True
    assert validate_image(data, UploadLimits()).format == fmt
    for fraction in (0.3, 0.5, 0.7, 0.9):
        with pytest.raises(UploadError) as caught:
            validate_image(data[: int(len(data) * fraction)], UploadLimits())
        assert caught.value.code in ("truncated_image", "corrupt_image"), (fraction, caught.value.message)
    for cut in range(1, 13):  # the last bytes: EOI, IEND's CRC, the GIF trailer, the WebP's last chunk
        with pytest.raises(UploadError) as caught:
            check_structure(data[:-cut], fmt)
        assert caught.value.code == "truncated_image", (cut, caught.value.message)


def test_bytes_after_the_jpeg_end_are_allowed():
    """Cameras append trailers (and phones whole videos) after the end-of-image marker."""
    data = encode(random_pixels(), "JPEG") + b"\x00" * 16 + b"ftypmp42" + bytes(range(256)) * 40
    assert validate_image(data, UploadLimits()).format == "JPEG"


def test_an_embedded_thumbnail_does_not_hide_a_cut_main_image():
    """An EXIF thumbnail is a whole JPEG (scan and end marker included) inside an APP1 segment."""
    thumbnail = encode(random_pixels(16, 16, seed=1), "JPEG")
    main = encode(random_pixels(120, 160, seed=2), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 8) + b"Exif\x00\x00" + thumbnail
    whole = main[:2] + app1 + main[2:]
    assert validate_image(whole, UploadLimits()).width == 160
    with pytest.raises(UploadError) as caught:
        validate_image(whole[: len(whole) * 3 // 4], UploadLimits())
    assert caught.value.code == "truncated_image"


def test_broken_markers_are_corrupt_not_truncated():
    data = encode(random_pixels(), "JPEG")
    with pytest.raises(UploadError) as caught:
        check_structure(data[:2] + b"\x00\x00" + data[2:], "JPEG")
    assert caught.value.code == "corrupt_image"
    png = encode(random_pixels(), "PNG")
    with pytest.raises(UploadError) as caught:
        check_structure(png[:12] + b"\x00\x01\x02\x03" + png[16:], "PNG")  # the IHDR chunk's type
    assert caught.value.code == "corrupt_image"


def test_bmp_is_decoded_instead():
    data = encode(random_pixels(), "BMP")
    assert check_structure(data, "BMP") is False
    with pytest.raises(UploadError) as caught:
        validate_image(data[: len(data) // 2], UploadLimits())
    assert caught.value.code == "truncated_image"


def test_declared_size_agrees_with_pillow(cats_dogs_dir, flowers_dir):
    """JPEG and PNG headers read without Pillow give Pillow's format and size; the rest is left to Pillow."""
    photos = sorted(cats_dogs_dir.rglob("*.jpg"))[::10] + sorted(flowers_dir.rglob("*.jpg"))[::10]
    files = [p.read_bytes() for p in photos]
    pixels = random_pixels(37, 53, seed=5)
    files += [encode(pixels, "JPEG", progressive=True), encode(pixels, "PNG")]
    for mode in ("L", "RGBA", "P", "I;16"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
        files.append(buffer.getvalue())
    assert len(files) > 600
    for data in files:
        image = Image.open(io.BytesIO(data))
        assert declared_size(data) == (image.format, *image.size)

    frames = [Image.fromarray(random_pixels(20, 30, seed=i)) for i in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, "PNG", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(animated.getvalue())).n_frames == 3
    assert declared_size(animated.getvalue()) is None  # Pillow counts the frames
    for other in ("GIF", "WEBP", "BMP"):
        assert declared_size(encode(pixels, other)) is None
    assert declared_size(b"\xff\xd8\xff\xd9") is None and declared_size(b"\x89PNG\r\n\x1a\n") is None
