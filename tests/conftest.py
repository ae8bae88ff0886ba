"""Shared fixtures: tiny synthetic datasets, trained tiny runs, and the real data in ../shared.

Tests that need ../shared/data or ../shared/weights skip with a reason when the folder is
missing on a user's machine, and fail in CI (``CI`` or ``IMGCLF_REQUIRE_SHARED_DATA`` set), so CI
never silently skips them.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCLF_SHARED_DIR", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights"
MOBILENET_V2_WEIGHTS = SHARED_WEIGHTS / "mobilenet_v2_0.35_224_no_top.weights.h5"
MOBILENET_V1_WEIGHTS = SHARED_WEIGHTS / "mobilenet_v1_0.25_224_no_top.h5"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} is missing (real data and weights live in ../shared beside the checkout)"
    if os.environ.get("CI") or os.environ.get("IMGCLF_REQUIRE_SHARED_DATA"):
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def flowers_dir() -> Path:
    return _require(SHARED_DATA / "flowers")


@pytest.fixture(scope="session")
def cats_dogs_dir() -> Path:
    return _require(SHARED_DATA / "cats_dogs")


@pytest.fixture(scope="session")
def mobilenet_v2_weights() -> Path:
    return _require(MOBILENET_V2_WEIGHTS)


@pytest.fixture(scope="session")
def mobilenet_v1_weights() -> Path:
    return _require(MOBILENET_V1_WEIGHTS)


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def random_pixels(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """3 classes × 40 synthetic images, 48 px, no split folders."""
    from imgclf.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), per_class=40, size=48, seed=1)


@pytest.fixture(scope="session")
def binary_shapes_dir(tmp_path_factory) -> Path:
    """2 classes (circle, square) with train and validation split folders."""
    from imgclf.synthetic import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path_factory.mktemp("binary"),
        per_class=40,
        size=48,
        seed=2,
        classes=("circle", "square"),
        splits=("train", "validation"),
    )


def tiny_config(data: Path, out: Path, **overrides):
    from imgclf.config import TrainConfig

    values = dict(data=str(data), out=str(out), model="small_cnn", image_size=32, epochs=2, batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def shapes_run(shapes_dir, tmp_path_factory):
    """A trained 3-class small_cnn run (2 epochs)."""
    from imgclf.modeling.training import train

    return train(tiny_config(shapes_dir, tmp_path_factory.mktemp("runs") / "shapes"), report=lambda _: None)


@pytest.fixture(scope="session")
def binary_run(binary_shapes_dir, tmp_path_factory):
    """A trained binary small_cnn run (sigmoid head), 4 epochs."""
    from imgclf.modeling.training import train

    config = tiny_config(binary_shapes_dir, tmp_path_factory.mktemp("runs") / "binary", epochs=4)
    return train(config, report=lambda _: None)


def write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or ["path", "label", "split"])
        writer.writerows(rows)
    return path


POSTGRES_ADMIN_URL = os.environ.get("IMGCLF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _require_service(name: str, error: Exception) -> None:
    message = f"{name} is not reachable ({error})"
    if os.environ.get("CI") or os.environ.get("IMGCLF_REQUIRE_SERVICES"):
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test (dropped afterwards), as a SQLAlchemy URL."""
    import uuid

    import psycopg

    name = f"imgclf_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        _require_service("PostgreSQL", error)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each database test runs on the embedded default (SQLite) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imgclf.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def redis_url():
    """Redis on this machine (a unique key prefix per test is the caller's job)."""
    import redis

    url = os.environ.get("IMGCLF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.exceptions.ConnectionError as error:
        _require_service("Redis", error)
    return url


# ---------------------------------------------------------------- a real export (gateway, hostile, release tests)


@pytest.fixture(scope="session")
def cats_dogs_registry(cats_dogs_dir, tmp_path_factory) -> Path:
    """A small CNN trained for one epoch on 48 real cats_dogs photos, exported as ``cats_dogs``.

    Its accuracy does not matter here; what matters is real JPEGs through a real export.
    """
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run

    root = tmp_path_factory.mktemp("cats_dogs_model")
    rows = []
    for split, folder, count in (("train", "train", 16), ("val", "validation", 8)):
        for label in ("cats", "dogs"):
            rows += [[str(p), label, split] for p in sorted((cats_dogs_dir / folder / label).iterdir())[:count]]
    manifest = write_csv(root / "subset.csv", rows)
    run = train(tiny_config(manifest, root / "run", epochs=1, image_size=32), report=lambda _: None)
    registry = root / "registry"
    export_run(run.path, registry, "cats_dogs")
    return registry


@pytest.fixture(scope="session")
def photos(cats_dogs_dir) -> list[tuple[str, bytes]]:
    """Eight real validation photos (name, bytes), none used in training."""
    paths = []
    for label in ("cats", "dogs"):
        paths += sorted((cats_dogs_dir / "validation" / label).iterdir())[-4:]
    return [(p.name, p.read_bytes()) for p in paths]


@pytest.fixture(scope="session")
def litert_export(cats_dogs_dir, mobilenet_v2_weights, tmp_path_factory) -> Path:
    """MobileNetV2 α 0.35 (ImageNet weights) trained briefly on 64 real cats_dogs photos at 96 px and
    exported once with ``--tflite int8,float16`` (int8 calibrated on 16 training images); the version directory.
    """
    from imgclf.config import TrainConfig
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run

    root = tmp_path_factory.mktemp("litert_model")
    rows = []
    for split, folder, count in (("train", "train", 32), ("val", "validation", 20)):
        for label in ("cats", "dogs"):
            rows += [[str(p), label, split] for p in sorted((cats_dogs_dir / folder / label).iterdir())[:count]]
    config = TrainConfig(
        data=str(write_csv(root / "subset.csv", rows)), out=str(root / "run"), model="mobilenet_v2", alpha=0.35,
        weights=str(mobilenet_v2_weights), image_size=96, epochs=3, fine_tune_epochs=0, batch_size=16,
        augmentation={"enabled": False}, learning_rate=3e-3,
    )  # fmt: skip
    run = train(config, report=lambda _: None)
    return export_run(run.path, root / "registry", "pets", tflite=["int8", "float16"], representative_images=16)


# ---------------------------------------------------------------- markers

# Fixtures that train a model (seconds to minutes each): a test that uses one, directly or through
# another fixture, is ``slow``, so ``make test-fast`` (``-m "not slow"``) skips it.
TRAINING_FIXTURES = {"shapes_run", "binary_run", "cats_dogs_registry", "drift_export", "litert_export"}


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
