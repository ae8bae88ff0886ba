"""Data-aware training defaults (issue 21): image size, epochs, class weights and augmentation
follow their rules on synthetic datasets of different image sizes, counts, balance and colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.config import TrainConfig
from imgclf.data.prepare import prepare_training_data
from imgclf.data.sources import load_dataset
from imgclf.modeling.defaults import choose_defaults, choose_image_size
from imgclf.modeling.training import resolve_config


def _images(root: Path, counts: dict[str, int], size: tuple[int, int], gray: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    width, height = size
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            if gray:
                pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(root / label / f"{i}.png")
            else:
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / label / f"{i}.jpg", quality=90)
    return root


def _chosen(data: Path, out: Path, **options) -> tuple[TrainConfig, dict[str, str]]:
    config = resolve_config(TrainConfig(data=str(data), out=str(out), **options))
    prepared = prepare_training_data(load_dataset(data), config.val_fraction, config.seed)
    return choose_defaults(config, prepared)


@pytest.fixture
def mobilenet(mobilenet_v2_weights) -> dict:
    return {"model": "mobilenet_v2", "alpha": 0.35, "weights": str(mobilenet_v2_weights)}


def test_image_size_follows_the_images(tmp_path, mobilenet):
    small = _images(tmp_path / "small", {"a": 10, "b": 10}, (120, 90))
    large = _images(tmp_path / "large", {"a": 10, "b": 10}, (320, 240))
    medium = _images(tmp_path / "medium", {"a": 10, "b": 10}, (232, 160))
    assert _chosen(small, tmp_path / "r1", **mobilenet)[0].image_size == 224  # never below native
    config, reasons = _chosen(large, tmp_path / "r2", **mobilenet)
    assert config.image_size == 288
    assert "320 px on its longer side" in reasons["image_size"]
    assert _chosen(medium, tmp_path / "r3", **mobilenet)[0].image_size == 256  # 232 * 1.15 = 267
    assert _chosen(large, tmp_path / "r4", image_size=160, **mobilenet)[0].image_size == 160  # given: kept


def test_image_size_respects_budget_weights_and_scratch_models(tmp_path, mobilenet):
    stats = {"median_long_side": 500.0}
    config = resolve_config(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), **mobilenet))
    assert choose_image_size(config, stats, 2_000)[0] == 288
    size, why = choose_image_size(config, stats, 50_000)  # 50,000 x (288/224)^2 > the budget
    assert size == 224 and "compute budget" in why
    keras_download = config.model_copy(update={"weights": "imagenet"})  # Keras' ImageNet files: 224 px at most
    assert choose_image_size(keras_download, stats, 2_000)[0] == 224
    scratch = resolve_config(TrainConfig(data=str(tmp_path), out=str(tmp_path / "s"), model="small_cnn"))
    assert choose_image_size(scratch, stats, 2_000)[0] == 128


def test_epochs_follow_the_dataset_size(tmp_path, mobilenet):
    few = _images(tmp_path / "few", {"a": 20, "b": 20}, (64, 64))
    config, reasons = _chosen(few, tmp_path / "r1", **mobilenet)
    assert (config.epochs, config.fine_tune_epochs) == (20, 12)  # 32 training images: both caps
    assert "32 training images" in reasons["epochs"]
    given, reasons = _chosen(few, tmp_path / "r2", epochs=5, **mobilenet)
    assert (given.epochs, given.fine_tune_epochs) == (5, 12) and "epochs" not in reasons
    scratch, _ = _chosen(few, tmp_path / "r3", model="small_cnn")
    assert scratch.fine_tune_epochs == 0
    from imgclf.modeling.defaults import choose_epochs

    assert choose_epochs(config, 2_934)[:2] == (6, 8)  # flowers' training split
    assert choose_epochs(config, 2_000)[:2] == (8, 11)  # cats_dogs'
    assert choose_epochs(config, 200_000)[:2] == (3, 2)


def test_class_weights_and_augmentation_follow_the_data(tmp_path, mobilenet):
    colour = _images(tmp_path / "colour", {"ok": 24, "defect": 10}, (64, 64))
    config, reasons = _chosen(colour, tmp_path / "r1", **mobilenet)
    assert reasons["class_weights"].startswith("balanced (auto)")
    assert config.augmentation.contrast > 0 and "colour photos" in reasons["augmentation"]
    gray = _images(tmp_path / "gray", {"ok": 12, "defect": 12}, (64, 64), gray=True)
    config, reasons = _chosen(gray, tmp_path / "r2", **mobilenet)
    assert reasons["class_weights"].startswith("none (auto)")
    assert config.augmentation.contrast == 0 and "grayscale" in reasons["augmentation"]
    assert config.augmentation.rotation > 0  # geometric transforms stay
    given, reasons = _chosen(gray, tmp_path / "r3", augmentation={"contrast": 0.2}, **mobilenet)
    assert given.augmentation.contrast == 0.2 and "augmentation" not in reasons


def test_gray_photos_saved_as_colour_count_as_grayscale(tmp_path):
    from imgclf.data.inspection import inspect_image

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "gray.jpg", quality=85)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "colour.jpg")
    assert inspect_image(tmp_path / "gray.jpg").grayscale
    assert not inspect_image(tmp_path / "colour.jpg").grayscale


def test_config_file_options(tmp_path):
    from imgclf.errors import ConfigError

    path = tmp_path / "config.json"
    TrainConfig(data="d", out="o", epochs=3, chosen={"epochs": "why"}).save(path)
    options = TrainConfig.read_options(path)
    assert options["epochs"] == 3 and "chosen" not in options
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.read_options(path)
