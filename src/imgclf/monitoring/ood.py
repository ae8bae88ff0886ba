"""Out-of-distribution scores: how far one image's embedding lies from the reference images'.

A classifier answers one of its classes for any image: a cat sent to the flowers model gets a
flower, often with a confident score. What it cannot hide is that the cat's embedding lies far
from every flower it was shown. The score of an embedding is the distance to its k-th nearest
embedding in the export's reference profile (k = 5; cosine distance, 1 − cos: both vectors are
L2-normalised, so the direction counts and the length does not), divided by a threshold calibrated
on the reference itself. Cosine separated photos of another dataset as well as or better than the
Euclidean distance (AUC 0.93 vs 0.78 for the flowers model), and better still on wider
projections; Euclidean caught noise images better on the 32-d projection (``benchmarks/RESULTS.md``,
"Out-of-distribution scores"). The calibration:

- each reference embedding's distance to its k-th nearest *other* reference embedding
  (leave-one-out: what a new image of the same distribution sees);
- the threshold is the ⌈(n + 1) · 0.95⌉-th smallest of those n distances, so a new image
  exchangeable with the reference exceeds it with probability ≤ 5 % (a conformal bound; with
  fewer than 19 reference embeddings it is the largest, which bounds the rate by 1 / (n + 1)).

``ood_score`` is that ratio: ≤ 1 looks like the reference, > 1 is out of distribution (about 5 %
of in-distribution images are above 1 by construction), 2 is twice as far as the calibrated limit.

Example:
    >>> scorer = OutOfDistribution.calibrate(reference_embeddings)   # [n, 32], n ≥ k + 1
    >>> scorer.scores(embeddings)                                   # [m] ood_score per image
    array([0.62, 0.91, 3.4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Metric = Literal["cosine", "euclidean"]
METHOD = "knn"
DEFAULT_K = 5
DEFAULT_METRIC: Metric = "cosine"
DEFAULT_QUANTILE = 0.95  # share of in-distribution images at or below the threshold
_TINY = 1e-12


def _prepare(embeddings: np.ndarray, metric: Metric) -> np.ndarray:
    """Rows as compared: unit length for cosine (a zero row stays zero: distance 1 to everything)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        x = x.reshape(len(x), -1) if x.size else np.zeros((len(x), 0))
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _TINY)
    return x


def _distances(queries: np.ndarray, reference: np.ndarray, metric: Metric) -> np.ndarray:
    """[m, n] distances between prepared rows."""
    products = queries @ reference.T
    if metric == "cosine":
        return np.clip(1.0 - products, 0.0, 2.0)
    squared = (queries**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * products
    return np.sqrt(np.maximum(squared, 0.0))


def _kth_smallest(distances: np.ndarray, k: int) -> np.ndarray:
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def conformal_threshold(calibration_scores: np.ndarray, quantile: float) -> float:
    """The ⌈(n + 1) · quantile⌉-th smallest score (the largest when that rank is beyond n).

    >>> conformal_threshold(np.arange(1.0, 101.0), 0.95)   # rank ⌈101 · 0.95⌉ = 96
    96.0
    """
    ordered = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    rank = min(math.ceil((len(ordered) + 1) * quantile), len(ordered))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class OutOfDistribution:
    """A k-nearest-neighbour out-of-distribution scorer over a set of reference embeddings."""

    reference: np.ndarray  # [n, d] as compared (unit rows for cosine)
    threshold: float  # the calibrated distance: ood_score = distance / threshold
    k: int = DEFAULT_K
    metric: Metric = DEFAULT_METRIC
    quantile: float = DEFAULT_QUANTILE

    @classmethod
    def calibrate(
        cls,
        reference: np.ndarray,
        k: int = DEFAULT_K,
        metric: Metric = DEFAULT_METRIC,
        quantile: float = DEFAULT_QUANTILE,
    ) -> OutOfDistribution | None:
        """Calibrated on ``reference`` itself (leave-one-out); None with fewer than k + 1 embeddings."""
        prepared = _prepare(reference, metric)
        if len(prepared) < k + 1 or prepared.shape[1] == 0:
            return None
        threshold = conformal_threshold(leave_one_out_distances(prepared, k, metric), quantile)
        return cls(prepared, max(threshold, _TINY), k, metric, quantile)

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """[m] distance of each embedding to its k-th nearest reference embedding."""
        queries = _prepare(embeddings, self.metric)
        if len(queries) == 0:
            return np.zeros(0)
        return _kth_smallest(_distances(queries, self.reference, self.metric), self.k)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[m] ``ood_score`` of each embedding: its distance over the calibrated threshold (> 1: out)."""
        return self.distances(embeddings) / self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The calibration as stored in the reference profile (the embeddings are stored beside it)."""
        return {
            "method": METHOD,
            "k": self.k,
            "metric": self.metric,
            "quantile": self.quantile,
            "threshold": self.threshold,
            "reference_size": len(self.reference),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], reference: np.ndarray) -> OutOfDistribution | None:
        """The stored calibration over the profile's embeddings; None when it does not fit them
        (another method, another sample size) rather than a score measured against the wrong limit."""
        if data.get("method") != METHOD or data.get("metric") not in ("cosine", "euclidean"):
            return None
        prepared = _prepare(reference, data["metric"])
        if len(prepared) != data.get("reference_size") or len(prepared) < int(data["k"]) + 1:
            return None
        return cls(prepared, float(data["threshold"]), int(data["k"]), data["metric"], float(data["quantile"]))


def leave_one_out_distances(prepared: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    """[n] each prepared row's distance to its k-th nearest other row (an n × n matrix: n ≤ a few thousand)."""
    distances = _distances(prepared, prepared, metric)
    np.fill_diagonal(distances, np.inf)
    return _kth_smallest(distances, k)
