"""Per-file inspection, duplicate detection, the data check report and splitting."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.checks import check_dataset
from imgclf.data.duplicates import find_duplicates
from imgclf.data.inspection import inspect_bytes, inspect_images
from imgclf.data.sources import load_dataset
from imgclf.data.splits import assign_splits
from imgclf.errors import DatasetError
from imgclf.synthetic import draw_shape
from tests.conftest import encode, random_pixels


def _photo(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random 'photo' (blurred noise), so re-encoding keeps it recognisable."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def test_statuses_of_broken_files():
    good = encode(random_pixels(), "JPEG")
    assert inspect_bytes(Path("a.jpg"), good).status == "ok"
    assert inspect_bytes(Path("a.jpg"), b"").status == "empty"
    assert inspect_bytes(Path("a.jpg"), b"hello, I am text").status == "not_image"
    assert inspect_bytes(Path("a.jpg"), good[: len(good) // 2]).status == "truncated"
    tiff = encode(random_pixels(), "TIFF")
    assert inspect_bytes(Path("a.tif"), tiff).status == "unsupported_format"


def test_extension_that_lies_is_flagged():
    info = inspect_bytes(Path("photo.jpg"), encode(random_pixels(), "PNG"))
    assert info.usable and info.format == "PNG" and info.extension_mismatch
    assert not inspect_bytes(Path("photo.png"), encode(random_pixels(), "PNG")).extension_mismatch


def test_colour_modes_and_frames():
    gray = inspect_bytes(Path("g.png"), encode(random_pixels()[..., 0], "PNG"))
    assert gray.mode == "L"
    rgba = inspect_bytes(Path("a.png"), encode(np.dstack([random_pixels(), random_pixels()[..., 0]]), "PNG"))
    assert rgba.has_alpha
    buffer = io.BytesIO()
    frames = [Image.fromarray(random_pixels(seed=s)) for s in range(3)]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert inspect_bytes(Path("x.gif"), buffer.getvalue()).frames == 3


def test_near_duplicates_found_and_distinct_images_not(tmp_path):
    original = _photo(1)
    (tmp_path / "a.jpg").write_bytes(encode(original, "JPEG", quality=95))
    resized = np.asarray(Image.fromarray(original).resize((48, 48)))
    (tmp_path / "b.jpg").write_bytes(encode(resized, "JPEG", quality=70))  # re-encoded, smaller copy
    (tmp_path / "c.png").write_bytes(encode(original, "PNG"))
    (tmp_path / "d.png").write_bytes(encode(original, "PNG"))  # byte-identical to c
    for seed in range(2, 8):
        (tmp_path / f"other{seed}.png").write_bytes(encode(_photo(seed), "PNG"))
    paths = sorted(tmp_path.iterdir())
    infos = inspect_images(paths)
    duplicates = find_duplicates(infos)
    names = lambda group: {paths[i].name for i in group}  # noqa: E731
    assert [names(g.members) for g in duplicates.exact] == [{"c.png", "d.png"}]
    near = [names(g.members) for g in duplicates.near_groups()]
    assert near == [{"a.jpg", "b.jpg", "c.png", "d.png"}]


def test_check_reports_conflicts_leakage_and_broken_files(tmp_path):
    photo = encode(_photo(1), "PNG")
    jpeg = encode(_photo(5), "JPEG")
    for path, data in {
        "train/cats/1.png": photo,
        "train/dogs/1.png": photo,  # same bytes, other class: conflicting labels
        "val/cats/2.png": photo,  # same bytes, other split: leakage
        "train/cats/3.png": encode(_photo(3), "PNG"),
        "train/dogs/4.jpg": encode(_photo(4), "PNG"),  # PNG named .jpg
        "train/dogs/5.jpg": jpeg[: len(jpeg) * 2 // 3],  # truncated in the image data
        "train/dogs/6.txt": b"notes",  # not an image
        "val/dogs/7.png": encode(_photo(7, size=12), "PNG"),  # tiny
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    report = check_dataset(load_dataset(tmp_path))
    summary = report.summary
    assert summary["conflicting_labels"] == 1 and summary["leakage"] == 1
    assert summary["unusable"] == 2 and summary["extension_mismatch"] == 1
    assert summary["tiny_images"] == 1
    assert {u["problem"] for u in report.unusable} == {"truncated", "not_image"}
    assert report.counts["train"] == {"cats": 2, "dogs": 4}
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # read only


@pytest.mark.slow
def test_check_finds_the_known_defects_in_flowers(flowers_dir):
    report = check_dataset(load_dataset(flowers_dir))
    conflicting = [
        {f["path"] for f in g["files"]}
        for g in report.exact_duplicates["across_classes"] + report.near_duplicates["across_classes"]
    ]
    assert {"train/roses/15922772266_1167a06620.jpg", "train/tulips/15922772266_1167a06620.jpg"} in conflicting
    leaked = [{f["path"] for f in g["files"]} for g in report.near_duplicates["across_splits"]]
    assert any({"train/roses/1775233884_12ff5a124f.jpg", "val/roses/2093263381_afd51358a3.jpg"} <= g for g in leaked)
    assert report.summary["unusable"] == 0


def _split_fixture(tmp_path, per_class=20):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for n in range(per_class):
            image = draw_shape("circle" if label == "a" else "square", 32, rng)
            image.save(tmp_path / label / f"{n}.png")
    # A near-duplicate pair in class a: must land in one split.
    Image.open(tmp_path / "a" / "0.png").resize((30, 30)).save(tmp_path / "a" / "0_copy.jpg", quality=95)
    dataset = load_dataset(tmp_path)
    return dataset, inspect_images([s.path for s in dataset.samples])


def test_split_is_deterministic_stratified_and_keeps_duplicates_together(tmp_path):
    dataset, infos = _split_fixture(tmp_path)
    first = assign_splits(dataset.samples, infos, val_fraction=0.25, test_fraction=0.25, seed=7)
    shuffled = list(zip(dataset.samples, infos, strict=True))
    random.Random(3).shuffle(shuffled)
    second = assign_splits([s for s, _ in shuffled], [i for _, i in shuffled], 0.25, 0.25, seed=7)
    assert {s.path: s.split for s in first} == {s.path: s.split for s in second}
    counts = Counter((s.label, s.split) for s in first)
    assert counts[("b", "val")] == 5 and counts[("b", "test")] == 5 and counts[("b", "train")] == 10
    by_name = {s.path.name: s.split for s in first if s.label == "a"}
    assert by_name["0.png"] == by_name["0_copy.jpg"]
    other_seed = assign_splits(dataset.samples, infos, 0.25, 0.25, seed=8)
    assert [s.split for s in other_seed] != [s.split for s in first]


def test_split_fractions_are_validated(tmp_path):
    dataset, infos = _split_fixture(tmp_path, per_class=3)
    with pytest.raises(DatasetError, match="fractions"):
        assign_splits(dataset.samples, infos, val_fraction=0.6, test_fraction=0.5)
