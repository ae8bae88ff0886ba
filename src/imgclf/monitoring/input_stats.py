"""Cheap per-image statistics that monitoring compares between the reference and production.

Statistics (``STATISTICS``): per-channel mean and standard deviation of RGB (0–255), brightness
and contrast (mean and standard deviation of luma, ITU-R 601), sharpness (variance of the
4-neighbour Laplacian of luma), width, height and aspect ratio (width / height) of the original
image. The format (JPEG, PNG, ...) is tracked separately as a category. Values are rounded to 4
decimals (``rounded``) wherever they are recorded.

Two measurements exist, and a model is only ever compared with itself:

* **In the signature** (exports made by this version): ``serving_default`` returns them as its
  ``input_statistics`` output (``imgclf.contract.OUTPUT_INPUT_STATISTICS``), measured on the pixels the model sees
  (``imgclf.export.input_statistics``). The gateway records that output; the export's reference
  profile is measured through the same signature. The gateway never decodes an upload itself.
* **With Pillow** (``image_statistics``; exports made before the signature had the output): a
  *preview*, the image decoded at reduced scale (JPEG decodes at 1/2, 1/4 or 1/8 scale directly)
  and box-resized so its longest side is ``PREVIEW_SIDE`` pixels. Such exports' reference profiles
  were measured this way, so the gateway measures their uploads this way too.

Example:
    >>> stats = image_statistics(open("cat.jpg", "rb").read())
    >>> round(stats.values["brightness"]), stats.format
    (112, 'JPEG')
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

PREVIEW_SIDE = 128
STATISTICS = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "brightness",
    "contrast",
    "sharpness",
    "width",
    "height",
    "aspect_ratio",
)


@dataclass(frozen=True)
class ImageStatistics:
    format: str
    values: dict[str, float]  # one entry per name in STATISTICS


def rounded(values: Iterable[float]) -> dict[str, float]:
    """One image's statistics (in ``STATISTICS`` order) as recorded: a name → value dict, 4 decimals.

    Rounded once, here: the reference, the gateway's records and any re-measurement agree exactly
    (a KS test on values rounded on one side only sees a shift at every tie).
    """
    values = [round(float(v), 4) for v in values]
    if len(values) != len(STATISTICS):
        raise ValueError(f"expected {len(STATISTICS)} statistics, got {len(values)}")
    return dict(zip(STATISTICS, values, strict=True))


def load_preview(image: Image.Image) -> None:
    """Decode ``image`` (opened, not yet loaded) at the smallest JPEG scale that keeps PREVIEW_SIDE.

    Reads every byte of the file, so truncation and corruption still surface as errors.
    """
    width, height = image.size
    if image.format == "JPEG":
        scale = PREVIEW_SIDE / max(width, height, 1)
        image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    image.load()


def preview_rgb(image: Image.Image) -> Image.Image:
    """A loaded image as RGB with its longest side at most PREVIEW_SIDE (box filter); not a copy if it already is."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    longest = max(rgb.size)
    if longest > PREVIEW_SIDE:
        size = tuple(max(1, round(side * PREVIEW_SIDE / longest)) for side in rgb.size)
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return rgb


def statistics_of(image: Image.Image, width: int, height: int) -> ImageStatistics:
    """Statistics of a loaded preview of an image whose original size is ``width`` × ``height``.

    Means and standard deviations come from Pillow's histograms (the sums ``ImageStat`` uses,
    added up with numpy), so the whole measurement costs about 0.25 ms per upload.
    """
    rgb = preview_rgb(image)
    luma_image = rgb.convert("L")  # ITU-R 601 luma, as uint8
    mean, std = _histogram_moments(rgb.histogram() + luma_image.histogram())  # R, G, B, L
    luma = np.asarray(luma_image, dtype=np.float32)
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1]
        sharpness = float(laplacian.var())
    else:
        sharpness = 0.0
    values = {
        "mean_r": mean[0],
        "mean_g": mean[1],
        "mean_b": mean[2],
        "std_r": std[0],
        "std_g": std[1],
        "std_b": std[2],
        "brightness": mean[3],
        "contrast": std[3],
        "sharpness": sharpness,
        "width": float(width),
        "height": float(height),
        "aspect_ratio": width / height if height else 0.0,
    }
    return ImageStatistics(image.format or "unknown", rounded(values[name] for name in STATISTICS))


_LEVELS = np.arange(256, dtype=np.float64)


def _histogram_moments(histogram: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per band (256 bins each): mean and population standard deviation, as ``ImageStat.Stat``."""
    counts = np.asarray(histogram, dtype=np.float64).reshape(-1, 256)
    n = counts.sum(axis=1)
    total = counts @ _LEVELS
    squares = counts @ (_LEVELS * _LEVELS)
    mean = total / n
    return mean, np.sqrt(np.maximum((squares - total * total / n) / n, 0.0))


def image_format(data: bytes) -> str:
    """The format Pillow reads from the header ("JPEG", "PNG", ...); "unknown" if it reads none."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or "unknown"
    except Exception:  # Pillow raises many types on hostile headers
        return "unknown"


def image_statistics(data: bytes) -> ImageStatistics:
    """Statistics of encoded image bytes (raises Pillow's errors on undecodable data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        fmt = image.format
        width, height = image.size
        load_preview(image)
    image.format = fmt
    return statistics_of(image, width, height)
