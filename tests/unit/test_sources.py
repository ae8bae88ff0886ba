"""Dataset discovery: folder trees with and without splits, CSV manifests, and their errors."""

from __future__ import annotations

import pytest

from imgclf.data.sources import load_dataset, write_manifest
from imgclf.errors import DatasetError
from tests.conftest import encode, random_pixels, write_csv


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(random_pixels(seed=seed), "PNG"))
    return path


def test_folder_without_splits(tmp_path):
    _image(tmp_path / "cats" / "a.png")
    _image(tmp_path / "dogs" / "b.png")
    _image(tmp_path / "dogs" / "nested" / "c.png")
    _image(tmp_path / "dogs" / ".hidden.png")
    dataset = load_dataset(tmp_path)
    assert dataset.classes == ["cats", "dogs"]
    assert not dataset.has_splits
    assert dataset.counts() == {"all": {"cats": 1, "dogs": 2}}


@pytest.mark.parametrize("val_name", ["val", "validation", "valid", "Validation"])
def test_split_folder_aliases(tmp_path, val_name):
    _image(tmp_path / "train" / "a" / "1.png")
    _image(tmp_path / val_name / "a" / "2.png")
    _image(tmp_path / "test" / "a" / "3.png")
    dataset = load_dataset(tmp_path)
    assert dataset.split_names == ["train", "val", "test"]
    assert len(dataset.subset("validation").samples) == 1


def test_two_folders_for_one_split_is_an_error(tmp_path):
    _image(tmp_path / "val" / "a" / "1.png")
    _image(tmp_path / "validation" / "a" / "2.png")
    with pytest.raises(DatasetError, match="two folders"):
        load_dataset(tmp_path)


def test_csv_manifest_with_relative_paths(tmp_path):
    _image(tmp_path / "imgs" / "1.png")
    _image(tmp_path / "imgs" / "2.png")
    manifest = write_csv(tmp_path / "m.csv", [["imgs/1.png", "x", "train"], ["imgs/2.png", "y", "validation"]])
    dataset = load_dataset(manifest)
    assert dataset.kind == "csv"
    assert [(s.label, s.split) for s in dataset.samples] == [("x", "train"), ("y", "val")]


def test_manifest_round_trip(tmp_path):
    _image(tmp_path / "data" / "a" / "1.png")
    _image(tmp_path / "data" / "b" / "2.png")
    dataset = load_dataset(tmp_path / "data")
    out = write_manifest(dataset.samples, tmp_path / "manifest.csv")
    assert "data/a/1.png" in out.read_text()
    assert [s.path for s in load_dataset(out).samples] == [s.path for s in dataset.samples]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "no class folders"),
        (lambda p: (p / "a").mkdir() or p, "no files found"),
        (lambda p: write_csv(p / "m.csv", [["x.png"]], header=["path"]), "missing column"),
        (lambda p: write_csv(p / "m.csv", [["gone.png", "a", ""]]), "missing file"),
        (lambda p: write_csv(p / "m.csv", [["", "a", ""]]), "empty path or label"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not a .csv"),
    ],
)
def test_unusable_sources_raise_one_clear_error(tmp_path, setup, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(setup(tmp_path))


def test_manifest_with_unknown_split(tmp_path):
    _image(tmp_path / "1.png")
    manifest = write_csv(tmp_path / "m.csv", [["1.png", "a", "holdout"]])
    with pytest.raises(DatasetError, match="unknown split 'holdout'"):
        load_dataset(manifest)


def test_labels_with_control_characters_are_refused_where_they_enter(tmp_path):
    """Issue 17: a review label 'cats\\ndogs' reached training through a manifest and split the
    export's labels.txt; a folder name can carry the same."""
    image = _image(tmp_path / "img" / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'path,label\n{image},"cats\ndogs"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="control character"):
        load_dataset(manifest)
    _image(tmp_path / "tree" / "ca\tts" / "a.png")
    _image(tmp_path / "tree" / "dogs" / "b.png")
    with pytest.raises(DatasetError, match="control character"):
        load_dataset(tmp_path / "tree")


def test_manifest_labels_are_safe_in_a_spreadsheet_and_read_back_exactly(tmp_path):
    """OWASP CSV injection: no cell starts with = + - @; labels still round-trip unchanged."""
    from imgclf.data.sources import Sample

    labels = ['=HYPERLINK("http://evil","x")', "+1", "-2", "@SUM(A1)", "'quoted", "''", "plain", "a=b"]
    samples = [Sample(_image(tmp_path / "img" / f"{i}.png", seed=i), label) for i, label in enumerate(labels)]
    out = write_manifest(samples, tmp_path / "reviewed.csv")
    import csv

    cells = [row[1] for row in csv.reader(out.open(encoding="utf-8"))][1:]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
    assert [s.label for s in load_dataset(out).samples] == labels
