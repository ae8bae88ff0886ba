"""Confidence intervals for accuracies measured on few labelled predictions.

Example:
    >>> wilson_interval(45, 50)
    (0.786..., 0.956...)
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None without trials.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small samples and
    proportions near 0 or 1 (Wilson, 1927; Brown, Cai & DasGupta, 2001).
    """
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
