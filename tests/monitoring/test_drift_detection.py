"""Drift detection with a real export of real photos: false alarms on held-back images of the
training distribution, detection of darkened photos and of flowers sent to a cats_dogs model.

The reference profile is measured on 300 validation photos; 300 other validation photos are
the in-distribution traffic. Windows of 200 are drawn 20 times from each pool with the default
thresholds (the full table, with a MobileNetV2 and more shifts, is in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.export.inference import ExportedModel
from imgclf.export.reference import observe_images
from imgclf.monitoring.input_stats import rounded
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.simulation import apply_shift, detection_rate
from tests.conftest import encode, tiny_config, write_csv

WINDOW = 200
WINDOWS = 20


@pytest.fixture(scope="module")
def drift_export(cats_dogs_dir, tmp_path_factory) -> tuple[Path, list[bytes]]:
    """small_cnn (64 px, one epoch on 100 photos) exported with 300 reference photos; 300 held back."""
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run

    root = tmp_path_factory.mktemp("drift")
    train_rows, reference_rows, held_back = [], [], []
    for label in ("cats", "dogs"):
        train_rows += [[str(p), label] for p in sorted((cats_dogs_dir / "train" / label).iterdir())[:50]]
        validation = sorted((cats_dogs_dir / "validation" / label).iterdir())
        reference_rows += [[str(p), label] for p in validation[0:300:2]]
        held_back += validation[1:300:2]
    manifest = write_csv(root / "train.csv", train_rows, ["path", "label"])
    run = train(tiny_config(manifest, root / "run", epochs=1, image_size=64), report=lambda _: None)
    reference = write_csv(root / "reference.csv", reference_rows, ["path", "label"])
    version_dir = export_run(run.path, root / "registry", "cats_dogs", reference_data=str(reference))
    return version_dir, [p.read_bytes() for p in held_back]


def test_export_stores_the_reference_profile_and_outputs_embeddings(drift_export):
    version_dir, held_back = drift_export
    profile = ReferenceProfile.load(version_dir)
    assert profile.window.size == 300
    assert profile.window.embeddings.shape == (300, 32)
    assert 0 <= profile.accuracy <= 1 and profile.calibration is not None
    assert profile.source.endswith("reference.csv")
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["monitoring"]["reference_images"] == 300
    model = ExportedModel.load(version_dir)
    outputs = model.predict_bytes(held_back[:3])
    assert set(outputs) == {"scores", "class_ids", "labels", "embedding_projection", "input_statistics"}
    outputs = model.predict_bytes(held_back[:3], signature="serving_features")
    assert outputs["embedding"].shape == (3, 128)  # small_cnn's Dense(128) "embedding" layer
    assert outputs["embedding_projection"].shape == (3, 32)
    # The projection is the fixed linear map of the embedding the card documents.
    from imgclf.export.savedmodel import projection_matrix

    np.testing.assert_allclose(
        outputs["embedding_projection"], outputs["embedding"] @ projection_matrix(128), rtol=1e-4, atol=1e-4
    )


def test_the_signature_measures_the_input_statistics_of_the_reference_and_of_traffic(drift_export):
    version_dir, held_back = drift_export
    profile = ReferenceProfile.load(version_dir)
    reference = [Image.open(io.BytesIO(Path(p).read_bytes())) for p in _reference_paths(version_dir)]
    assert profile.window.statistics["width"].tolist() == [float(image.width) for image in reference]
    assert profile.window.statistics["height"].tolist() == [float(image.height) for image in reference]
    assert profile.window.formats == ["JPEG"] * len(reference)

    photo = held_back[0]
    gray = Image.open(io.BytesIO(photo)).convert("L").convert("RGB")
    images = [photo, apply_shift(photo, "darken"), encode(np.asarray(gray), "PNG")]
    outputs = ExportedModel.load(version_dir).predict_bytes(images)
    stats = [rounded(row) for row in outputs["input_statistics"]]
    width, height = Image.open(io.BytesIO(photo)).size
    assert (stats[0]["width"], stats[0]["height"]) == (width, height)
    assert stats[0]["aspect_ratio"] == round(width / height, 4)
    assert stats[1]["brightness"] < 0.8 * stats[0]["brightness"]  # darkened
    assert stats[0]["sharpness"] > 0 and stats[0]["contrast"] > 0
    # Equal channels: equal means, and luma equals them (the weights sum to one).
    assert stats[2]["mean_r"] == stats[2]["mean_g"] == stats[2]["mean_b"]
    assert stats[2]["brightness"] == pytest.approx(stats[2]["mean_r"], abs=1e-3)


def _reference_paths(version_dir: Path) -> list[str]:
    import csv

    source = ReferenceProfile.load(version_dir).source
    with open(source, newline="") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def test_false_alarms_and_detection_at_a_window_of_200(drift_export, flowers_dir):
    version_dir, held_back = drift_export
    model = ExportedModel.load(version_dir)
    profile = ReferenceProfile.load(version_dir)
    flowers = sorted((flowers_dir / "val").rglob("*.jpg"))[::2][:300]

    in_distribution = detection_rate(profile, observe_images(model, held_back), WINDOW, WINDOWS)
    assert in_distribution.rate <= 0.05, in_distribution.tests

    darkened = observe_images(model, [apply_shift(data, "darken") for data in held_back])
    rate = detection_rate(profile, darkened, WINDOW, WINDOWS)
    assert rate.rate >= 0.95
    assert rate.tests.get("inputs.brightness") == WINDOWS

    other_classes = detection_rate(profile, observe_images(model, [p.read_bytes() for p in flowers]), WINDOW, WINDOWS)
    assert other_classes.rate >= 0.95, other_classes.tests
