"""Check drift thresholds on your own data: shifted copies of images and detection rates.

``SHIFTS`` holds the image changes production meets (a darker camera, blur, a rotated mount,
heavier JPEG compression). ``detection_rate`` draws many windows from a pool of observed images
and counts how often ``detect_drift`` says drift: on held-back in-distribution images that is the
false-alarm rate, on shifted images the detection rate. The benchmark (``benchmarks/drift.py``)
and the tests use these.

Example:
    >>> darker = [apply_shift(data, "darken") for data in images]
    >>> detection_rate(profile, observe_images(model, darker), window_size=200, windows=20).rate
    1.0
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from imgclf.monitoring.drift import DriftThresholds, detect_drift
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import Window


def _darken(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(0.4)


def _darken_slightly(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(0.85)


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=max(1.0, max(image.size) / 150)))


def _rotate(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_90)


SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "darken": _darken,  # brightness × 0.4
    "darken_slightly": _darken_slightly,  # brightness × 0.85: how sensitive the defaults are
    "blur": _blur,  # Gaussian, radius 1/150 of the longest side (about 3 px on a 500 px photo)
    "rotate": _rotate,  # 90°
    "jpeg": lambda image: image,  # re-encoded at quality 10 below
}


def apply_shift(data: bytes, shift: str) -> bytes:
    """The image in ``data`` changed by ``shift`` (see SHIFTS), encoded as JPEG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    changed = SHIFTS[shift](image)
    out = io.BytesIO()
    changed.save(out, format="JPEG", quality=10 if shift == "jpeg" else 90)
    return out.getvalue()


@dataclass(frozen=True)
class DetectionRate:
    window_size: int
    windows: int
    detected: int
    tests: dict[str, int]  # how often each test fired

    @property
    def rate(self) -> float:
        return self.detected / self.windows if self.windows else 0.0


def detection_rate(
    profile: ReferenceProfile,
    pool: Window,
    window_size: int,
    windows: int = 20,
    thresholds: DriftThresholds | None = None,
    seed: int = 0,
) -> DetectionRate:
    """Share of ``windows`` random windows (without replacement within one) from ``pool`` flagged as drift."""
    rng = np.random.default_rng(seed)
    fired: Counter[str] = Counter()
    detected = 0
    for index in range(windows):
        rows = np.sort(rng.choice(pool.size, size=min(window_size, pool.size), replace=False))
        t = thresholds or DriftThresholds.from_settings()
        report = detect_drift(profile, pool.take(rows), DriftThresholds(**{**t.__dict__, "seed": seed + index}))
        detected += report.verdict == "drift"
        fired.update(test.name for test in report.drifted)
    return DetectionRate(window_size, windows, detected, dict(fired))
