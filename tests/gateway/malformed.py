"""A corpus of hostile and broken uploads, generated (nothing binary is checked in)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.conftest import encode, random_pixels


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def gif_with_frames(count: int) -> bytes:
    frames = [Image.new("RGB", (8, 8), color=(i % 256, (i * 7) % 256, i // 256)) for i in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    return buffer.getvalue()


def malformed_corpus() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, the error code the gateway must answer with)."""
    jpeg = encode(random_pixels(150, 200), "JPEG")
    return {
        "empty file": (b"", "empty_file"),
        "text renamed .jpg": (b"this is not an image, just text\n", "unsupported_format"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], "truncated_image"),
        "PNG declaring 30000x30000": (png_declaring(30000, 30000), "image_too_large"),
        "GIF with 300 frames": (gif_with_frames(300), "too_many_frames"),
        "TIFF": (encode(random_pixels(20, 20), "TIFF"), "unsupported_format"),
        "JPEG header then garbage": (jpeg[:200] + b"\x00" * 5000, "corrupt_image"),
        "JPEG of 1,100 empty comment segments": (jpeg[:2] + b"\xff\xfe\x00\x02" * 1100 + jpeg[2:], "corrupt_image"),
    }


def jpeg_with_broken_scan(jpeg: bytes) -> bytes:
    """A whole JPEG (every marker, an end-of-image marker) whose scan names a component the frame
    does not have: it passes the gateway's structural checks, and only a decoder refuses it."""
    sos = jpeg.index(b"\xff\xda")
    broken = bytearray(jpeg)
    broken[sos + 5] = 9  # FF DA, length (2), component count, then the first component's id
    return bytes(broken)
