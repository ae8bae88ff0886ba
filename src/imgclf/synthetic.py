"""A small labelled image dataset drawn on the fly: circles, squares and triangles.

Used by ``make demo`` (which must work with no data and no internet) and by the tests. Bright shapes
vary in colour, size and position on a dark, noisy background, so a small CNN needs a few epochs to
separate them, like a real task in miniature.

Example:

>>> root = make_shapes_dataset("demo/data", per_class=60, size=64, seed=0)
>>> sorted(p.name for p in root.iterdir())
['circle', 'square', 'triangle']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    background = rng.integers(0, 100, 3)
    # A random linear gradient plus noise, so no two backgrounds look alike.
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    ramp = (np.cos(angle) * x + np.sin(angle) * y)[..., None] * rng.uniform(20, 60, 3)
    noise = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(background + ramp + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(155, 256, 3))
    radius = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif shape == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        draw.polygon([(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image


def make_shapes_dataset(
    out: str | Path,
    per_class: int = 80,
    size: int = 64,
    seed: int = 0,
    classes: tuple[str, ...] = SHAPES,
    splits: tuple[str, ...] = (),
) -> Path:
    """Write ``out/[split/]<shape>/<n>.jpg`` (every fifth image as PNG); return ``out``."""
    root = Path(out)
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for shape in classes:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                image = draw_shape(shape, size, rng)
                if n % 5 == 4:
                    image.save(folder / f"{shape}_{n:04d}.png")
                else:
                    image.save(folder / f"{shape}_{n:04d}.jpg", quality=90)
    return root
