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
    assert validate_image(data, UploadLimits.from_settings()).format == fmt
    for fraction in (0.3, 0.5, 0.7, 0.9):
        with pytest.raises(UploadError) as caught:
            validate_image(data[: int(len(data) * fraction)], UploadLimits.from_settings())
        assert caught.value.code in ("truncated_image", "corrupt_image"), (fraction, caught.value.message)
    for cut in range(1, 13):  # the last bytes: EOI, IEND's CRC, the GIF trailer, the WebP's last chunk
        with pytest.raises(UploadError) as caught:
            check_structure(data[:-cut], fmt)
        assert caught.value.code == "truncated_image", (cut, caught.value.message)


def test_bytes_after_the_jpeg_end_are_allowed():
    """Cameras append trailers (and phones whole videos) after the end-of-image marker."""
    data = encode(random_pixels(), "JPEG") + b"\x00" * 16 + b"ftypmp42" + bytes(range(256)) * 40
    assert validate_image(data, UploadLimits.from_settings()).format == "JPEG"


def test_an_embedded_thumbnail_does_not_hide_a_cut_main_image():
    """An EXIF thumbnail is a whole JPEG (scan and end marker included) inside an APP1 segment."""
    thumbnail = encode(random_pixels(16, 16, seed=1), "JPEG")
    main = encode(random_pixels(120, 160, seed=2), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 8) + b"Exif\x00\x00" + thumbnail
    whole = main[:2] + app1 + main[2:]
    assert validate_image(whole, UploadLimits.from_settings()).width == 160
    with pytest.raises(UploadError) as caught:
        validate_image(whole[: len(whole) * 3 // 4], UploadLimits.from_settings())
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
        validate_image(data[: len(data) // 2], UploadLimits.from_settings())
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


def test_files_made_of_endless_structure_are_refused_without_walking_it_all():
    """Issue 17: a 10 MB JPEG of 2.6 million empty COM segments cost 2 s of CPU and 250 MB; a PNG of
    tiny chunks is the same trick. Both are refused at the first segment past the cap."""
    import time

    from imgclf.gateway.image_structure import MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS

    real = encode(random_pixels(64, 64, seed=1), "JPEG")
    comments = b"\xff\xd8" + b"\xff\xfe\x00\x02" * 2_600_000 + real[2:]
    tiny_chunk = struct.pack(">I", 0) + b"tEXt" + b"\x00" * 4
    png = encode(random_pixels(8, 8, seed=1), "PNG")
    chunks = png[:33] + tiny_chunk * 200_000 + png[33:]
    for data, cap in ((comments, MAX_JPEG_SEGMENTS), (chunks, MAX_PNG_CHUNKS)):
        started = time.process_time()
        with pytest.raises(UploadError) as caught:
            validate_image(data, UploadLimits.from_settings(max_bytes=20_000_000))
        assert caught.value.code == "corrupt_image" and f"more than {cap}" in caught.value.message
        assert time.process_time() - started < 1.0  # generous: it stops after the cap (milliseconds)
    # Real files are far from the caps: an ICC profile split over many APP2 segments still passes.
    icc = b"".join(b"\xff\xe2" + struct.pack(">H", 16) + b"ICC_PROFILE\x00\x01\x01" for _ in range(255))
    assert validate_image(real[:2] + icc + real[2:], UploadLimits.from_settings()).format == "JPEG"


def test_a_whole_jpeg_with_garbage_scan_data_is_classified_as_the_readme_says(cats_dogs_dir):
    """libjpeg (in TensorFlow, TF Serving and Pillow) decodes what it can of garbage entropy-coded data;
    the structure is whole, so validation lets it through and the model classifies it."""
    import numpy as np
    import tensorflow as tf

    data = bytearray(sorted((cats_dogs_dir / "validation" / "cats").iterdir())[0].read_bytes())
    sos = data.find(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big"), data.rfind(b"\xff\xd9")
    data[start:end] = np.random.default_rng(0).integers(0, 255, end - start, dtype=np.uint8).tobytes()
    assert validate_image(bytes(data), UploadLimits.from_settings()).format == "JPEG"
    assert tf.io.decode_image(bytes(data), channels=3).shape[2] == 3
