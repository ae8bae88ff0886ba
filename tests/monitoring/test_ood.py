"""The out-of-distribution scorer on synthetic clusters, and its calibration in the reference profile."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.ood import OutOfDistribution, conformal_threshold, leave_one_out_distances
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import Window

DIM = 32


def clusters(n: int, seed: int, centres_seed: int = 0) -> np.ndarray:
    """Points around 5 fixed centres (the classes of a model), as embeddings of in-distribution images."""
    centres = np.random.default_rng(centres_seed).normal(0, 3, (5, DIM))
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, 5, n)] + rng.normal(0, 1, (n, DIM))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_about_five_percent_of_new_in_distribution_points_are_flagged_and_far_points_all(metric):
    scorer = OutOfDistribution.calibrate(clusters(1000, seed=1), metric=metric)
    assert scorer is not None and (scorer.k, scorer.quantile) == (5, 0.95)
    flagged = (scorer.scores(clusters(4000, seed=2)) > 1).mean()
    assert 0.025 <= flagged <= 0.07  # 5 % by construction; 4000 draws: ±1 % is 3 standard errors
    far = np.random.default_rng(3).normal(0, 3, (200, DIM))  # around other centres
    assert (scorer.scores(far) > 1).mean() > 0.95
    assert (scorer.scores(clusters(200, seed=4, centres_seed=9)) > 1).all()


def test_the_threshold_is_the_conformal_quantile_of_leave_one_out_distances():
    reference = clusters(100, seed=5)
    scorer = OutOfDistribution.calibrate(reference, k=3, metric="euclidean")
    # Brute force: each point's 3rd nearest other point; rank ⌈101 · 0.95⌉ = 96 of the sorted 100.
    distances = np.linalg.norm(reference[:, None] - reference[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    loo = np.sort(np.sort(distances, axis=1)[:, 2])
    assert scorer.threshold == pytest.approx(loo[95])
    np.testing.assert_allclose(np.sort(leave_one_out_distances(reference, 3, "euclidean")), loo)
    # A new point's score is its 3rd-nearest distance over that threshold.
    point = reference[:1] + 0.5
    nearest = np.sort(np.linalg.norm(reference - point, axis=1))[2]
    assert scorer.scores(point)[0] == pytest.approx(nearest / loo[95])
    # Fewer calibration points than the rank needs: the largest (at most 1 / (n + 1) flagged).
    assert conformal_threshold(np.array([3.0, 1.0, 2.0]), 0.95) == 3.0
    assert conformal_threshold(np.arange(1.0, 101.0), 0.95) == 96.0


def test_cosine_ignores_the_length_of_an_embedding():
    reference = clusters(300, seed=6)
    cosine = OutOfDistribution.calibrate(reference)
    queries = clusters(20, seed=7)
    np.testing.assert_allclose(cosine.scores(queries * 7.5), cosine.scores(queries), rtol=1e-9)
    zero = cosine.scores(np.zeros((1, DIM)))  # a zero embedding has no direction: distance 1, no crash
    assert np.isfinite(zero).all() and zero[0] > 1
    euclidean = OutOfDistribution.calibrate(reference, metric="euclidean")
    assert (euclidean.scores(queries * 7.5) > 1).all()


def test_too_few_reference_embeddings_give_no_scorer():
    assert OutOfDistribution.calibrate(clusters(5, seed=8), k=5) is None
    assert OutOfDistribution.calibrate(np.zeros((0, DIM))) is None
    assert OutOfDistribution.calibrate(clusters(6, seed=8), k=5) is not None


def test_a_stored_calibration_that_does_not_fit_the_embeddings_is_not_used():
    reference = clusters(100, seed=9)
    stored = OutOfDistribution.calibrate(reference).to_dict()
    assert json.loads(json.dumps(stored)) == stored
    again = OutOfDistribution.from_dict(stored, reference)
    assert again is not None and again.threshold == stored["threshold"]
    assert OutOfDistribution.from_dict(stored, reference[:50]) is None  # another sample
    assert OutOfDistribution.from_dict({**stored, "method": "mahalanobis"}, reference) is None


def synthetic_window(n: int, seed: int) -> Window:
    rng = np.random.default_rng(seed)
    return Window(
        classes=["a", "b"],
        class_ids=rng.integers(0, 2, n),
        confidence=rng.uniform(0.5, 1, n),
        statistics={name: rng.normal(100, 10, n) for name in STATISTICS},
        formats=["JPEG"] * n,
        embeddings=clusters(n, seed),
    )


def test_the_reference_profile_stores_the_calibration_and_old_profiles_load_without_it(tmp_path):
    # 1500 embeddings: the profile keeps a sample of 1000 and calibrates on exactly those, as stored.
    profile = ReferenceProfile.build(synthetic_window(1500, seed=10), None, "synthetic", {"dim": DIM})
    assert profile.ood is not None and len(profile.ood.reference) == 1000 == len(profile.window.embeddings)
    (tmp_path / "1").mkdir()
    path = profile.save(tmp_path / "1")
    loaded = ReferenceProfile.load(tmp_path / "1")
    assert loaded.ood is not None and loaded.ood.to_dict() == profile.ood.to_dict()
    queries = clusters(50, seed=11)
    np.testing.assert_allclose(loaded.ood.scores(queries), profile.ood.scores(queries), rtol=1e-12)
    # The leave-one-out flagged share on the reference itself is at most 5 %.
    loo = leave_one_out_distances(loaded.ood.reference, loaded.ood.k, loaded.ood.metric)
    assert (loo > loaded.ood.threshold).mean() <= 0.05

    # A profile written before the calibration existed: no "ood" key. It loads; no scorer, no crash.
    data = json.loads(path.read_text())
    del data["ood"]
    path.write_text(json.dumps(data))
    old = ReferenceProfile.load(tmp_path / "1")
    assert old.ood is None and old.window.embeddings.shape == (1000, DIM)
    # A reference too small to calibrate is stored as null.
    tiny = ReferenceProfile.build(synthetic_window(4, seed=12), None, "synthetic", {"dim": DIM})
    assert tiny.ood is None and tiny.to_dict()["ood"] is None


def test_scoring_is_cheap_enough_for_every_request():
    import time

    scorer = OutOfDistribution.calibrate(clusters(1000, seed=13))
    batch = clusters(16, seed=14)
    started = time.perf_counter()
    for _ in range(50):
        scorer.scores(batch)
    per_call = (time.perf_counter() - started) / 50
    assert per_call < 0.02, f"{per_call * 1000:.1f} ms per batch of 16"
    assert math.isfinite(scorer.threshold)
