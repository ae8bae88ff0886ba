"""Find byte-identical and near-duplicate images.

Exact duplicates share a sha256. Near duplicates (re-encoded, resized, lightly edited copies) are
found in two stages: a cheap candidate filter on 64-bit difference hashes (Hamming distance ≤
``max_hash_distance``), then a confirmation by the Pearson correlation of 32×32 grayscale
thumbnails (≥ ``min_correlation``). On cats_dogs and flowers, real near-duplicates correlate at
≥ 0.99 and the most similar distinct photos at ≤ 0.80; smooth synthetic gradients reach 0.976, so the
default of 0.98 separates them.

Pairs are merged into groups (a copy of a copy is in the same group), so a split can keep each
group together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgclf.data.inspection import ImageInfo

DEFAULT_MAX_HASH_DISTANCE = 10
DEFAULT_MIN_CORRELATION = 0.98
_CHUNK = 1024


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices (into the inspected list) of files that are copies of each other."""

    members: tuple[int, ...]


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def exact_duplicate_groups(infos: Sequence[ImageInfo]) -> list[DuplicateGroup]:
    """Groups of two or more files with identical bytes."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for index, info in enumerate(infos):
        if info.sha256 and info.size_bytes:
            by_digest[info.sha256].append(index)
    return [DuplicateGroup(tuple(m)) for m in by_digest.values() if len(m) > 1]


def _standardized_thumbnails(infos: Sequence[ImageInfo], indices: np.ndarray) -> np.ndarray:
    pixels = np.stack([np.frombuffer(infos[i].thumbnail or b"", dtype=np.uint8) for i in indices]).astype(np.float32)
    pixels -= pixels.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(pixels, axis=1, keepdims=True)
    # A flat image (norm 0) correlates with nothing; leave it as zeros.
    return np.divide(pixels, norms, out=np.zeros_like(pixels), where=norms > 0)


def near_duplicate_pairs(
    infos: Sequence[ImageInfo],
    max_hash_distance: int = DEFAULT_MAX_HASH_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, correlation) of visually near-identical images that are not byte-identical.

    Compares every pair of hashes in chunks: O(n²) bit operations, about a second for 10,000
    images on two cores.
    """
    usable = np.array([i for i, info in enumerate(infos) if info.dhash is not None and info.thumbnail], dtype=np.int64)
    if len(usable) < 2:
        return []
    hashes = np.array([infos[i].dhash for i in usable], dtype=np.uint64)
    candidates: list[tuple[int, int]] = []
    for start in range(0, len(hashes), _CHUNK):
        block = hashes[start : start + _CHUNK]
        distances = np.bitwise_count(block[:, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distances <= max_hash_distance)
        rows = rows + start
        keep = cols > rows
        candidates += zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)
    if not candidates:
        return []
    pair_array = np.array(candidates, dtype=np.int64)
    thumbs = _standardized_thumbnails(infos, usable)
    correlations = np.einsum("ij,ij->i", thumbs[pair_array[:, 0]], thumbs[pair_array[:, 1]])
    pairs = []
    for (a, b), corr in zip(pair_array.tolist(), correlations.tolist(), strict=True):
        i, j = int(usable[a]), int(usable[b])
        if corr >= min_correlation and infos[i].sha256 != infos[j].sha256:
            pairs.append((i, j, float(corr)))
    return pairs


@dataclass(frozen=True)
class Duplicates:
    """Every copy relation among inspected files."""

    size: int  # number of files inspected
    exact: list[DuplicateGroup]  # byte-identical sets
    near_pairs: list[tuple[int, int, float]]  # visually identical, bytes differ

    def clusters(self) -> list[list[int]]:
        """Each file's cluster of copies (exact or near, transitively); singletons included."""
        union = _UnionFind(self.size)
        for group in self.exact:
            for other in group.members[1:]:
                union.union(group.members[0], other)
        for i, j, _ in self.near_pairs:
            union.union(i, j)
        clusters: dict[int, list[int]] = defaultdict(list)
        for index in range(self.size):
            clusters[union.find(index)].append(index)
        return list(clusters.values())

    def near_groups(self) -> list[DuplicateGroup]:
        """Clusters joined by at least one near-duplicate pair (exact copies folded in)."""
        linked = {i for pair in self.near_pairs for i in pair[:2]}
        return [DuplicateGroup(tuple(sorted(c))) for c in self.clusters() if len(c) > 1 and linked.intersection(c)]


def find_duplicates(
    infos: Sequence[ImageInfo],
    max_hash_distance: int = DEFAULT_MAX_HASH_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
) -> Duplicates:
    """Exact and near duplicates among ``infos``."""
    return Duplicates(
        size=len(infos),
        exact=exact_duplicate_groups(infos),
        near_pairs=near_duplicate_pairs(infos, max_hash_distance, min_correlation),
    )
