"""Look inside each file: is it an image, which format, does it decode, what does it hash to.

Formats are sniffed from the bytes (Pillow), never trusted from the extension. Each file is
decoded completely, so truncated and corrupt files are caught here, before TensorFlow sees
them. Files are read, never modified.

Example:

>>> info = inspect_image(Path("cats/cat.1.jpg"))
>>> info.status, info.format, info.width, info.height
('ok', 'JPEG', 500, 374)
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Formats TensorFlow's decode_image reads, i.e. what the single preprocessing path accepts.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
HASH_SIZE = 8  # dHash of 8x8 = 64 bits
THUMBNAIL_SIZE = 32  # grayscale thumbnail kept to confirm near-duplicate candidates
# JPEGs are decoded at reduced scale (fast DCT scaling); the whole stream is still read, so
# truncation is still caught, and every file is treated the same, so hashes stay comparable.
_DRAFT_SIZE = (2 * THUMBNAIL_SIZE, 2 * THUMBNAIL_SIZE)


@dataclass(frozen=True)
class ImageInfo:
    """What inspecting one file found. ``status`` is ``ok`` or the reason it is unusable."""

    path: Path
    status: str  # ok | empty | not_image | truncated | corrupt | unsupported_format
    sha256: str
    size_bytes: int
    format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    frames: int = 1
    has_alpha: bool = False
    dhash: int | None = None
    thumbnail: bytes | None = None  # THUMBNAIL_SIZE² grayscale pixels, row-major
    grayscale: bool = False  # no colour: a one-channel mode, or colour channels that (nearly) agree
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.status == "ok"

    @property
    def extension_mismatch(self) -> bool:
        """True when the extension names a known image format other than the real one."""
        expected = EXTENSION_FORMATS.get(self.path.suffix.lower())
        return self.format is not None and expected is not None and expected != self.format


def difference_hash(gray: Image.Image, hash_size: int = HASH_SIZE) -> int:
    """dHash: compare neighbouring pixels of a tiny grayscale copy; near-identical images agree."""
    small = gray.resize((hash_size + 1, hash_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "F"})
GRAY_TOLERANCE = 8  # max difference between colour channels (0-255) still counted as gray (JPEG chroma noise)


def is_grayscale(image: Image.Image) -> bool:
    """Whether a loaded image has no colour: a one-channel mode, or RGB channels within
    ``GRAY_TOLERANCE`` of each other on a small copy (gray photos saved as colour JPEGs)."""
    if image.mode in GRAY_MODES:
        return True
    small = np.asarray(image.convert("RGB").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE)), dtype=np.int16)
    spread = small.max(axis=-1) - small.min(axis=-1)
    return bool(spread.max() <= GRAY_TOLERANCE)


def inspect_bytes(path: Path, data: bytes) -> ImageInfo:
    """Inspect encoded bytes that came from ``path`` (used for naming and extension checks)."""
    digest = hashlib.sha256(data).hexdigest()
    base = {"path": path, "sha256": digest, "size_bytes": len(data)}
    if not data:
        return ImageInfo(status="empty", error="empty file", **base)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return ImageInfo(status="not_image", error="not a recognised image format", **base)
    except Exception as exc:  # Pillow raises many types on hostile headers
        return ImageInfo(status="corrupt", error=f"unreadable header: {exc}", **base)

    fmt = image.format
    width, height = image.size
    mode = image.mode
    frames = getattr(image, "n_frames", 1)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    described = {
        **base,
        "format": fmt,
        "width": width,
        "height": height,
        "mode": mode,
        "frames": frames,
        "has_alpha": has_alpha,
    }
    if fmt not in DECODABLE_FORMATS:
        return ImageInfo(
            status="unsupported_format",
            error=f"{fmt} images are not supported (use JPEG, PNG, GIF, BMP or WebP)",
            **described,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-decodable files
            if fmt == "JPEG":
                image.draft("RGB", _DRAFT_SIZE)
            image.load()
            gray = image.convert("L")
            dhash = difference_hash(gray)
            size = (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            thumbnail = gray.resize(size, Image.Resampling.BILINEAR).tobytes()
            grayscale = is_grayscale(image)
    except OSError as exc:
        message = str(exc)
        status = "truncated" if "truncated" in message.lower() else "corrupt"
        return ImageInfo(status=status, error=message, **described)
    except Exception as exc:
        return ImageInfo(status="corrupt", error=str(exc) or type(exc).__name__, **described)
    return ImageInfo(status="ok", dhash=dhash, thumbnail=thumbnail, grayscale=grayscale, **described)


def inspect_image(path: Path) -> ImageInfo:
    """Read and inspect one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageInfo(path=path, status="corrupt", sha256="", size_bytes=0, error=str(exc))
    return inspect_bytes(path, data)


def inspect_images(paths: Sequence[Path] | Iterable[Path], workers: int | None = None) -> list[ImageInfo]:
    """Inspect many files in parallel threads (Pillow and hashlib release the GIL)."""
    paths = list(paths)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(inspect_image, paths))
