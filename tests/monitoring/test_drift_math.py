"""The drift tests and quality estimates on synthetic windows (no model needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from imgclf.errors import MonitoringError
from imgclf.monitoring.drift import DriftThresholds, detect_drift, js_distance, mmd_permutation_test, psi
from imgclf.monitoring.input_stats import STATISTICS, image_statistics
from imgclf.monitoring.jobs import parse_duration
from imgclf.monitoring.profile import Calibration, ReferenceProfile
from imgclf.monitoring.window import Window
from tests.conftest import encode, random_pixels

CLASSES = ["cats", "dogs", "birds"]


def synthetic_window(n: int, seed: int, brightness_shift: float = 0.0, embedding_shift: float = 0.0) -> Window:
    rng = np.random.default_rng(seed)
    stats = {name: rng.normal(100, 20, n) for name in STATISTICS}
    stats["brightness"] = stats["brightness"] + brightness_shift
    embeddings = rng.normal(0, 1, (n, 8))
    embeddings[:, 0] += embedding_shift
    return Window(
        classes=CLASSES,
        class_ids=rng.choice(3, n, p=[0.5, 0.3, 0.2]),
        confidence=rng.beta(8, 2, n),
        statistics=stats,
        formats=["JPEG"] * n,
        embeddings=embeddings,
        needs_review=rng.random(n) < 0.1,
    )


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    window = synthetic_window(600, seed=0)
    rng = np.random.default_rng(1)
    y_true = np.where(rng.random(600) < window.confidence, window.class_ids, (window.class_ids + 1) % 3)
    return ReferenceProfile.build(window, y_true, "synthetic", {"output": "embedding_projection", "dim": 8})


def test_distances_of_identical_and_disjoint_distributions():
    assert psi(np.array([10, 20, 30]), np.array([20, 40, 60])) == pytest.approx(0, abs=1e-12)
    assert js_distance(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0, abs=1e-6)
    assert js_distance(np.array([10, 0]), np.array([0, 10])) > 0.99
    assert psi(np.array([10, 0]), np.array([0, 10])) > 5


def test_mmd_permutation_test_separates_same_from_shifted():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (200, 8))
    _, p_same = mmd_permutation_test(x, rng.normal(0, 1, (200, 8)), 200, rng)
    _, p_shifted = mmd_permutation_test(x, rng.normal(0.5, 1, (200, 8)), 200, rng)
    assert p_same > 0.05
    assert p_shifted == pytest.approx(1 / 201)


def test_same_distribution_is_no_drift(profile):
    report = detect_drift(profile, synthetic_window(300, seed=5), model_name="m", model_version=1)
    assert report.verdict == "no_drift", [t for t in report.tests if t.drifted]
    names = {t.name for t in report.tests}
    assert {"predictions.classes.psi", "predictions.confidence.js", "inputs.brightness", "embedding.mmd"} <= names
    assert "quality.estimated_accuracy_drop" in names


def test_shifted_inputs_and_embeddings_are_named(profile):
    report = detect_drift(profile, synthetic_window(300, seed=6, brightness_shift=15, embedding_shift=1.0))
    assert report.verdict == "drift"
    assert {t.name for t in report.drifted} == {"inputs.brightness", "embedding.mmd"}


def test_class_mix_shift_is_detected_by_psi_and_js(profile):
    window = synthetic_window(300, seed=7)
    window.class_ids = np.random.default_rng(7).choice(3, 300, p=[0.1, 0.2, 0.7])
    drifted = {t.name for t in detect_drift(profile, window).drifted}
    assert {"predictions.classes.psi", "predictions.classes.js"} <= drifted


def test_small_windows_are_insufficient_data(profile):
    report = detect_drift(profile, synthetic_window(20, seed=8), DriftThresholds.from_settings(min_window=50))
    assert report.verdict == "insufficient_data" and report.tests == []
    assert report.quality.predictions == 20


def test_calibration_and_estimated_accuracy(profile):
    calibration = profile.calibration
    grid = np.linspace(0, 1, 50)
    assert np.all(np.diff(calibration(grid)) >= 0)  # isotonic
    # On the reference itself the CBPE estimate equals the measured accuracy.
    report = detect_drift(profile, profile.window)
    assert report.quality.estimated_accuracy == pytest.approx(profile.accuracy, abs=1e-9)
    # Less confident traffic is estimated less accurate.
    unsure = synthetic_window(300, seed=9)
    unsure.confidence = unsure.confidence * 0.6
    assert detect_drift(profile, unsure).quality.estimated_accuracy < profile.accuracy - 0.1
    assert Calibration.fit(np.array([0.2, 0.9]), np.array([False, True]))(np.array([0.95])) == pytest.approx(1.0)


def test_profile_round_trips_through_json(profile, tmp_path):
    (tmp_path / "1").mkdir()
    profile.save(tmp_path / "1")
    loaded = ReferenceProfile.load(tmp_path / "1")
    assert loaded.window.classes == CLASSES
    np.testing.assert_array_equal(loaded.window.class_ids, profile.window.class_ids)
    np.testing.assert_allclose(loaded.window.embeddings, profile.window.embeddings, rtol=1e-4)
    assert loaded.accuracy == profile.accuracy
    with pytest.raises(MonitoringError, match="no reference profile"):
        ReferenceProfile.load(tmp_path)


def test_window_from_records_skips_unknown_labels_and_counts_reviews():
    now = datetime.now(UTC)
    stats = dict.fromkeys(STATISTICS, 1.0)
    records = [
        {"label": "cats", "confidence": 0.9, "created_at": now, "review_label": "cats", "input_stats": stats,
         "embedding": [0.1, 0.2], "image_format": "JPEG", "needs_review": False},
        {"label": "dogs", "confidence": 0.6, "created_at": now - timedelta(hours=1), "review_label": "cats",
         "input_stats": None, "embedding": None, "image_format": "PNG", "needs_review": True},
        {"label": "zebras", "confidence": 0.99, "created_at": now},
    ]  # fmt: skip
    window = Window.from_records(records, CLASSES)
    assert window.size == 2
    assert window.class_counts.tolist() == [1, 1, 0]
    assert window.embeddings.shape == (1, 2)
    assert len(window.statistics["brightness"]) == 1
    assert window.reviewed_correct.tolist() == [True, False]
    assert window.started_at == now - timedelta(hours=1)


def test_input_statistics_track_brightness_sharpness_and_size():
    pixels = random_pixels(300, 400, seed=3)
    stats = image_statistics(encode(pixels, "PNG")).values
    darker = image_statistics(encode((pixels * 0.4).astype(np.uint8), "PNG")).values
    smooth = image_statistics(encode(np.full_like(pixels, 128), "PNG")).values
    assert (stats["width"], stats["height"], stats["aspect_ratio"]) == (400, 300, pytest.approx(4 / 3, abs=1e-4))
    assert darker["brightness"] < 0.5 * stats["brightness"]
    assert smooth["sharpness"] == 0 and stats["sharpness"] > 100
    assert image_statistics(encode(pixels, "JPEG")).format == "JPEG"


def test_histogram_moments_equal_pillows_image_stat():
    """Reference profiles measured before the numpy moments must still match what the gateway measures."""
    from PIL import Image, ImageStat

    from imgclf.monitoring.input_stats import _histogram_moments

    for seed, mode in ((0, "RGB"), (1, "L"), (2, "RGB")):
        image = Image.fromarray(random_pixels(97, 131, seed=seed)).convert(mode)
        expected = ImageStat.Stat(image)
        mean, std = _histogram_moments(image.histogram())
        np.testing.assert_allclose(mean, expected.mean, rtol=1e-12)
        np.testing.assert_allclose(std, expected.stddev, rtol=1e-9)


def test_durations():
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(MonitoringError, match="cannot read duration"):
        parse_duration("yesterday")
