"""Drift tests: a window of production predictions against the version's reference profile.

Three layers, as in "Failing Loudly" (Rabanser et al.) and the tools users know:

* **predictions** — the predicted-class distribution and the confidence distribution, each by
  PSI (population stability index) and Jensen–Shannon distance (base 2, in [0, 1]); the confidence
  is binned at the reference's deciles. A distance drifts when it reaches its threshold (PSI 0.25,
  the usual "significant shift" convention; JS 0.2) *and* is unlikely to be sampling noise at this
  window size: its p-value, from multinomial resampling of the pooled bins, is below
  ``distance_p_value`` (small windows have large distances by chance alone).
* **inputs** — a two-sample Kolmogorov–Smirnov test on each input statistic
  (``imgclf.monitoring.input_stats``), Bonferroni-corrected over the statistics as alibi-detect
  does: a statistic drifts when p < ``ks_p_value`` / (number of statistics); plus the JS distance
  of the image-format mix.
* **embedding** — maximum mean discrepancy with a Gaussian kernel (bandwidth by the median
  heuristic) and a permutation test (alibi-detect's ``MMDDrift``): drift when p < ``mmd_p_value``.
  At most ``max_mmd_samples`` rows of each side are used, so a 10,000-row window stays fast.
* **quality** — the label-free accuracy estimate (``imgclf.monitoring.quality``) falling more than
  ``accuracy_drop`` below the reference accuracy.

The verdict is ``drift`` when any test drifts, ``no_drift`` otherwise, and ``insufficient_data``
when the window has fewer than ``min_window`` predictions. The defaults keep the false-alarm rate
of the whole verdict at or below 5% for windows of 200 in-distribution images while detecting
strong shifts (measured in benchmarks/RESULTS.md, "Drift detection").

Example:
    >>> report = detect_drift(profile, window)
    >>> report.verdict, [t.name for t in report.tests if t.drifted]
    ('drift', ['inputs.brightness', 'embedding.mmd'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from imgclf.config import GatewaySettings
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.quality import QualitySummary, summarize_quality
from imgclf.monitoring.window import Window

_EPS = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """The drift tests' thresholds. Their defaults are ``GatewaySettings``' (``IMGCLF_DRIFT_*``): build
    them with ``from_settings``."""

    psi: float
    js_distance: float
    ks_p_value: float  # family-wise over the input statistics (Bonferroni)
    mmd_p_value: float
    accuracy_drop: float
    min_window: int
    permutations: int
    distance_p_value: float = 0.01  # PSI and JS must also be significant at this level
    max_mmd_samples: int = 1000
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: GatewaySettings | None = None, **overrides: Any) -> DriftThresholds:
        settings = settings or GatewaySettings()
        values = dict(
            psi=settings.drift_psi,
            js_distance=settings.drift_js_distance,
            ks_p_value=settings.drift_ks_p_value,
            mmd_p_value=settings.drift_mmd_p_value,
            accuracy_drop=settings.drift_accuracy_drop,
            min_window=settings.drift_min_window,
            permutations=settings.drift_permutations,
        )
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class DriftTest:
    name: str  # e.g. "predictions.classes.psi", "inputs.brightness", "embedding.mmd"
    family: str  # predictions, inputs, embedding, quality
    method: str  # psi, js, ks, mmd, estimated_accuracy
    statistic: float
    threshold: float | None  # the statistic must reach this (None: only the p-value decides)
    drifted: bool
    p_value: float | None = None
    p_threshold: float | None = None  # the p-value must be below this (None: no p-value)

    @property
    def criterion(self) -> str:
        """When this test drifts, in words: ``≥ 0.25 and p < 0.01``."""
        parts = []
        if self.threshold is not None:
            parts.append(f"{'>' if self.method == 'estimated_accuracy' else '≥'} {self.threshold:.4g}")
        if self.p_threshold is not None:
            parts.append(f"p < {self.p_threshold:.2g}")
        return " and ".join(parts)


@dataclass
class DriftReport:
    model_name: str
    model_version: int
    window_size: int
    reference_size: int
    verdict: str  # drift, no_drift, insufficient_data
    tests: list[DriftTest] = field(default_factory=list)
    quality: QualitySummary | None = None
    window_start: str | None = None
    window_end: str | None = None

    @property
    def drifted(self) -> list[DriftTest]:
        return [t for t in self.tests if t.drifted]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted_tests"] = [t.name for t in self.drifted]
        return data


def psi(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Population stability index of count vectors over the same bins (last axis; rows broadcast)."""
    p = _proportions(reference)
    q = _proportions(current)
    return np.sum((q - p) * np.log(q / p), axis=-1)


def js_distance(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, 0 = same, 1 = disjoint) of count vectors (last axis)."""
    p = _proportions(reference)
    q = _proportions(current)
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log2(p / m), axis=-1) + 0.5 * np.sum(q * np.log2(q / m), axis=-1)
    return np.sqrt(np.maximum(divergence, 0.0))


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    p = np.clip(p, _EPS, None)
    return p / p.sum(axis=-1, keepdims=True)


def resampled_p_value(
    measure, reference: np.ndarray, current: np.ndarray, simulations: int, rng: np.random.Generator
) -> float:  # type: ignore[no-untyped-def]
    """p-value of ``measure(reference, current)`` when both are drawn from their pooled distribution."""
    observed = float(measure(reference, current))
    pooled = _proportions(np.asarray(reference) + np.asarray(current))
    ref_draws = rng.multinomial(int(np.sum(reference)), pooled, size=simulations)
    cur_draws = rng.multinomial(int(np.sum(current)), pooled, size=simulations)
    null = measure(ref_draws, cur_draws)
    return (1 + int(np.sum(null >= observed - 1e-12))) / (1 + simulations)


def confidence_bins(reference: np.ndarray) -> np.ndarray:
    """Inner bin edges at the reference's deciles (duplicates merged: confidences pile up near 1)."""
    return np.unique(np.quantile(reference, np.linspace(0.1, 0.9, 9)))


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Squared MMD (biased estimate, Gaussian kernel, median-heuristic bandwidth) and its permutation p-value."""
    z = np.vstack([x, y]).astype(np.float64)
    squared = np.sum(z * z, axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * z @ z.T, 0.0)
    upper = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-d2 / bandwidth)
    n, m = len(x), len(y)
    weights = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    shuffled = np.stack([weights[rng.permutation(n + m)] for _ in range(permutations)], axis=1)
    observed = float(weights @ kernel @ weights)
    null = np.einsum("ip,ip->p", shuffled, kernel @ shuffled)
    p_value = (1 + int(np.sum(null >= observed))) / (1 + permutations)
    return observed, p_value


def detect_drift(
    profile: ReferenceProfile,
    window: Window,
    thresholds: DriftThresholds | None = None,
    model_name: str = "",
    model_version: int = 0,
) -> DriftReport:
    """Run every drift test of ``window`` against ``profile``."""
    t = thresholds or DriftThresholds.from_settings()
    reference = profile.window
    report = DriftReport(
        model_name,
        model_version,
        window.size,
        reference.size,
        "insufficient_data",
        window_start=window.started_at.isoformat() if window.started_at else None,
        window_end=window.ended_at.isoformat() if window.ended_at else None,
    )
    report.quality = summarize_quality(window, profile)
    if window.size < t.min_window:
        return report
    rng = np.random.default_rng(t.seed)
    tests = report.tests
    classes = (reference.class_counts, window.class_counts)
    tests.extend(_distribution_tests("predictions.classes", "predictions", *classes, t, rng))
    edges = confidence_bins(reference.confidence)
    ref_hist = np.bincount(np.searchsorted(edges, reference.confidence, side="right"), minlength=len(edges) + 1)
    cur_hist = np.bincount(np.searchsorted(edges, window.confidence, side="right"), minlength=len(edges) + 1)
    tests.extend(_distribution_tests("predictions.confidence", "predictions", ref_hist, cur_hist, t, rng))
    tests.extend(_input_tests(reference, window, t, rng))
    if len(window.embeddings) >= t.min_window and len(reference.embeddings) >= t.min_window:
        x = _subsample(reference.embeddings, t.max_mmd_samples, rng)
        y = _subsample(window.embeddings, t.max_mmd_samples, rng)
        if x.shape[1] == y.shape[1]:
            mmd, p_value = mmd_permutation_test(x, y, t.permutations, rng)
            drifted = p_value < t.mmd_p_value
            tests.append(DriftTest("embedding.mmd", "embedding", "mmd", mmd, None, drifted, p_value, t.mmd_p_value))
    quality = report.quality
    if quality.estimated_accuracy is not None and profile.accuracy is not None:
        drop = profile.accuracy - quality.estimated_accuracy
        tests.append(DriftTest("quality.estimated_accuracy_drop", "quality", "estimated_accuracy", drop,
                               t.accuracy_drop, drop > t.accuracy_drop))  # fmt: skip
    report.verdict = "drift" if any(test.drifted for test in tests) else "no_drift"
    return report


def _distance_test(
    name: str, family: str, method: str, reference: np.ndarray, current: np.ndarray, t: DriftThresholds, rng
) -> DriftTest:  # type: ignore[no-untyped-def]
    measure, threshold = (psi, t.psi) if method == "psi" else (js_distance, t.js_distance)
    value = float(measure(reference, current))
    p_value = resampled_p_value(measure, reference, current, t.permutations, rng) if value >= threshold else None
    drifted = p_value is not None and p_value < t.distance_p_value
    return DriftTest(f"{name}.{method}", family, method, value, threshold, drifted, p_value, t.distance_p_value)


def _distribution_tests(
    name: str, family: str, reference: np.ndarray, current: np.ndarray, t: DriftThresholds, rng
) -> list[DriftTest]:  # type: ignore[no-untyped-def]
    return [_distance_test(name, family, method, reference, current, t, rng) for method in ("psi", "js")]


def _input_tests(reference: Window, window: Window, t: DriftThresholds, rng) -> list[DriftTest]:  # type: ignore[no-untyped-def]
    tests = []
    level = t.ks_p_value / len(STATISTICS)
    for name in STATISTICS:
        ref = reference.statistics[name]
        cur = window.statistics[name]
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        if len(cur) < t.min_window or len(ref) < t.min_window:
            continue
        result = scipy_stats.ks_2samp(ref, cur)
        p_value = float(result.pvalue)
        tests.append(
            DriftTest(f"inputs.{name}", "inputs", "ks", float(result.statistic), None, p_value < level, p_value, level)
        )
    names = sorted(set(reference.formats) | set(window.formats))
    ref_counts = np.array([reference.formats.count(n) for n in names])
    cur_counts = np.array([window.formats.count(n) for n in names])
    tests.append(_distance_test("inputs.format", "inputs", "js", ref_counts, cur_counts, t, rng))
    return tests


def _subsample(values: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= limit:
        return values
    return values[np.sort(rng.choice(len(values), limit, replace=False))]
