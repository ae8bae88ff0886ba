"""Issue 19 (1, 3): every manifest row is used, sources merge, flagged files can be left out, and
`data check` reports honestly (similarity, one class, imbalance over every class, --fail-on)."""

from __future__ import annotations

import json

import pytest

from imgclf.data.checks import check_dataset, flagged_files
from imgclf.data.prepare import prepare_training_data
from imgclf.data.sources import expand_paths, load_dataset, write_manifest
from imgclf.errors import ConfigError, DatasetError
from tests.conftest import encode, random_pixels, write_csv
from tests.helpers import run_cli


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(random_pixels(seed=seed), "PNG"))
    return path


def _rows(tmp_path, start, count, label, split):
    return [[str(_image(tmp_path / "img" / f"{start + i}.png", start + i)), label, split] for i in range(count)]


def test_manifest_rows_without_a_split_are_split_not_dropped(tmp_path):
    rows = _rows(tmp_path, 0, 8, "a", "train") + _rows(tmp_path, 10, 8, "b", "train")
    rows += _rows(tmp_path, 20, 2, "a", "val") + _rows(tmp_path, 30, 2, "b", "val")
    appended = _rows(tmp_path, 40, 10, "a", "") + _rows(tmp_path, 60, 10, "b", "")
    manifest = write_csv(tmp_path / "m.csv", rows + appended)
    prepared = prepare_training_data(load_dataset(manifest), val_fraction=0.2, seed=1)
    assert len(prepared.samples) == len(rows) + len(appended)  # nothing dropped
    appended_paths = {row[0] for row in appended}
    splits = [s.split for s in prepared.samples if str(s.path) in appended_paths]
    assert splits.count("val") == 4 and splits.count("train") == 16  # 20 % of each class, seeded
    assert "20 unsplit" in prepared.split_source


def test_an_unsplit_copy_of_a_validation_image_goes_to_validation(tmp_path):
    rows = _rows(tmp_path, 0, 6, "a", "train") + _rows(tmp_path, 10, 6, "b", "train")
    rows += _rows(tmp_path, 20, 2, "a", "val") + _rows(tmp_path, 30, 2, "b", "val")
    copy = tmp_path / "img" / "copy_of_20.png"
    copy.write_bytes((tmp_path / "img" / "20.png").read_bytes())
    manifest = write_csv(tmp_path / "m.csv", rows + [[str(copy), "a", ""]])
    prepared = prepare_training_data(load_dataset(manifest), val_fraction=0.5, seed=1)
    assert next(s.split for s in prepared.samples if s.path == copy.resolve()) == "val"
    assert prepared.duplicates["groups"] == 1 and prepared.duplicates["leaked_groups"] == 0


def test_test_rows_are_held_out_and_counted(tmp_path):
    rows = _rows(tmp_path, 0, 4, "a", "train") + _rows(tmp_path, 10, 4, "b", "train")
    rows += (
        _rows(tmp_path, 20, 2, "a", "val") + _rows(tmp_path, 30, 2, "b", "val") + _rows(tmp_path, 40, 3, "a", "test")
    )
    prepared = prepare_training_data(load_dataset(write_csv(tmp_path / "m.csv", rows)), 0.2, 1)
    assert prepared.held_out_test == 3 and len(prepared.samples) == 12


def test_later_sources_override_labels_by_content(tmp_path):
    for cls, start in (("a", 0), ("b", 10)):
        for i in range(5):
            _image(tmp_path / "data" / cls / f"{start + i}.png", start + i)
    # A reviewer says image 3 (in folder a) is a "b", from a copy at another path; and adds a new image.
    reviewed = tmp_path / "reviewed"
    (reviewed / "x.png").parent.mkdir(parents=True)
    (reviewed / "x.png").write_bytes((tmp_path / "data" / "a" / "3.png").read_bytes())
    _image(reviewed / "new.png", 99)
    manifest = write_csv(
        tmp_path / "reviewed.csv", [[str(reviewed / "x.png"), "b", ""], [str(reviewed / "new.png"), "a", ""]]
    )
    prepared = prepare_training_data([load_dataset(tmp_path / "data"), load_dataset(manifest)], 0.2, 1)
    labels = {s.path.name: s.label for s in prepared.samples}
    assert "3.png" not in labels and labels["x.png"] == "b" and labels["new.png"] == "a"
    assert len(prepared.samples) == 11
    assert prepared.merged == {"replaced": 1, "relabelled": 1}


def test_manifests_are_written_with_newlines(tmp_path):
    samples = load_dataset(write_csv(tmp_path / "m.csv", _rows(tmp_path, 0, 2, "a", "train"))).samples
    assert b"\r\n" not in write_manifest(samples, tmp_path / "out.csv").read_bytes()


def _dataset_with_conflict_and_leak(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls, start in (("cats", 0), ("dogs", 20)):
            for i in range(3 if split == "train" else 1):
                _image(
                    root / split / cls / f"{start + i + (10 if split == 'val' else 0)}.png",
                    start + i + (10 if split == "val" else 0),
                )
    # conflict: the same picture as a cat and as a dog (train); leak: a train cat again in val
    (root / "train" / "dogs" / "conflict.png").write_bytes((root / "train" / "cats" / "0.png").read_bytes())
    (root / "val" / "cats" / "leak.png").write_bytes((root / "train" / "cats" / "1.png").read_bytes())
    return root


def test_check_fails_on_requested_problems_and_reports_warnings(tmp_path, capsys):
    root = _dataset_with_conflict_and_leak(tmp_path)
    code, out, err = run_cli(["data", "check", str(root), "--fail-on", "conflicts,leakage"], capsys)
    assert code == 1 and "data check failed: conflicting_labels 1, leakage 1" in err
    assert run_cli(["data", "check", str(root), "--fail-on", "cmyk"], capsys)[0] == 0
    code, _, err = run_cli(["data", "check", str(root), "--fail-on", "nonsense"], capsys)
    assert code == 2 and "unknown check 'nonsense'" in err


def test_check_json_has_similarity_and_exclusion_leaves_flagged_files_out(tmp_path, capsys):
    root = _dataset_with_conflict_and_leak(tmp_path)
    code, out, _ = run_cli(["data", "check", str(root), "--json", "-"], capsys)
    report = json.loads(out)
    assert code == 0
    assert all(group["similarity"] == 1.0 for group in report["exact_duplicates"]["across_classes"])
    flagged = {p.name for p in flagged_files(report)}
    assert flagged == {"0.png", "conflict.png", "leak.png"}  # both conflicting copies, the val copy of the leak
    prepared = prepare_training_data(load_dataset(root), 0.2, 1, exclude=flagged_files(report))
    assert prepared.excluded == 3 and prepared.duplicates["leaked_groups"] == 0
    unfiltered = prepare_training_data(load_dataset(root), 0.2, 1)
    assert unfiltered.duplicates["leaked_groups"] == 1


def test_near_duplicates_carry_their_similarity(tmp_path):
    root = tmp_path / "ds"
    pixels = random_pixels(64, 64, seed=3)
    for cls in ("a", "b"):
        _image(root / cls / "other.png", ord(cls))
    (root / "a" / "x.png").write_bytes(encode(pixels, "PNG"))
    (root / "a" / "x.jpg").write_bytes(encode(pixels, "JPEG", quality=95))
    groups = check_dataset(load_dataset(root)).to_dict()["near_duplicates"]["within_class"]
    assert len(groups) == 1 and 0.98 <= groups[0]["pairs"][0]["similarity"] <= 1.0


def test_one_class_is_a_warning_and_imbalance_counts_every_class(tmp_path):
    root = tmp_path / "one"
    for i in range(3):
        _image(root / "only" / f"{i}.png", i)
    report = check_dataset(load_dataset(root))
    assert report.summary["one_class"] == 1 and "only one class" in report.warnings[0]
    # 4 images of a class that appears only in val against 8 train images: 8 + 1 vs 4 → counted, not skipped
    root = tmp_path / "skewed"
    for i in range(8):
        _image(root / "train" / "big" / f"{i}.png", 10 + i)
    _image(root / "val" / "big" / "v.png", 30)
    for i in range(4):
        _image(root / "val" / "rare" / f"{i}.png", 40 + i)
    assert check_dataset(load_dataset(root)).imbalance_ratio == 2.25


def test_expand_paths_takes_folders_and_globs(tmp_path):
    _image(tmp_path / "f" / "a.png", 1)
    _image(tmp_path / "f" / "sub" / "b.png", 2)
    _image(tmp_path / "f" / ".hidden.png", 3)
    assert [p.name for p in expand_paths([tmp_path / "f"])] == ["a.png", "b.png"]
    assert [p.name for p in expand_paths([str(tmp_path / "f" / "**" / "*.png")])] == ["a.png", "b.png"]
    with pytest.raises(DatasetError, match="no such file or folder"):
        expand_paths([tmp_path / "missing"])
    with pytest.raises(DatasetError, match="no files in"):
        expand_paths([str(tmp_path / "*.jpg")])


def test_unknown_fail_on_name_is_a_config_error(tmp_path):
    _image(tmp_path / "a" / "1.png", 1)
    with pytest.raises(ConfigError):
        check_dataset(load_dataset(tmp_path)).failures(["bogus"])
