"""The search's time budget as people write it (``30m``), read without importing TensorFlow."""

from __future__ import annotations

import math

from imgclf.errors import ConfigError


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1.5h`` or plain seconds → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ConfigError(f"invalid --budget {text!r}: use seconds or a number with s, m or h (e.g. 30m)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid --budget {text!r}: it must be positive")
    return seconds
