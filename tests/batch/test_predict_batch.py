"""imgclf predict-batch on a real local Ray: real JPEGs, damaged files, folders, globs, manifests, resume.

One embedded Ray serves the module (``predict_batch`` uses a Ray already initialised in its process);
the interrupted job runs in its own process with its own embedded Ray, killed with SIGKILL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.batch.ray_cluster import client_env, marked_processes, short_temp_dir, stop_marked
from tests.helpers import one_error_line, run_cli

EXPECTED_ERRORS = {
    "truncated.jpg": "truncated_image",
    "random_bytes.jpg": "unsupported_format",
    "empty.jpg": "empty_file",
    "notes.png": "unsupported_format",
    "huge.png": "image_too_large",
}


@pytest.fixture(scope="module")
def images(cats_dogs_dir, tmp_path_factory) -> Path:
    """12 real validation photos in cats/ and dogs/, and odd/: damaged files and a PNG named .jpg."""
    root = tmp_path_factory.mktemp("batch_images")
    photos = {}
    for label in ("cats", "dogs"):
        (root / label).mkdir()
        for source in sorted((cats_dogs_dir / "validation" / label).iterdir())[:6]:
            (root / label / source.name).write_bytes(source.read_bytes())
            photos[label] = source
    odd = root / "odd"
    odd.mkdir()
    whole = photos["cats"].read_bytes()
    (odd / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (odd / "random_bytes.jpg").write_bytes(os.urandom(5000))
    (odd / "empty.jpg").write_bytes(b"")
    (odd / "notes.png").write_text("not an image at all\n")
    buffer = io.BytesIO()
    Image.new("L", (12_000, 2)).save(buffer, format="PNG")  # over the gateway's 10,000 px a side
    (odd / "huge.png").write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    Image.open(photos["dogs"]).save(buffer, format="PNG")  # a real photo whose name says JPEG
    (odd / "png_named.jpg").write_bytes(buffer.getvalue())
    return root


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
        _temp_dir=str(temp := short_temp_dir()), logging_level="ERROR", log_to_driver=False,
    )  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _rows(out: Path) -> list[dict]:
    fmt = json.loads((out / "_job.json").read_text())["format"]
    rows = []
    for part in sorted(out.glob(f"part-*.{fmt}")):
        if fmt == "parquet":
            rows += pq.read_table(part).to_pylist()
        elif fmt == "jsonl":
            rows += [json.loads(line) for line in part.read_text().splitlines()]
        else:
            with part.open(newline="") as handle:
                rows += list(csv.DictReader(handle))
    return rows


def test_folder_rows_errors_and_scores_equal_imgclf_predict(local_ray, images, cats_dogs_registry, tmp_path, capsys):
    model = cats_dogs_registry / "cats_dogs"
    code, out, err = run_cli(["predict-batch", images, "--model", model, "--out", tmp_path / "out", "--format", "jsonl",
                              "--batch-size", "4"], capsys)  # fmt: skip
    assert code == 0, err
    final = out.strip().splitlines()[-1]
    assert final.startswith("18 images, 5 errors, ") and "images/s, wall time" in final, out
    rows = {Path(row["path"]).name: row for row in _rows(tmp_path / "out")}
    assert len(rows) == 18 == len(_rows(tmp_path / "out"))
    for name, row in rows.items():
        assert row["model"] == "cats_dogs" and row["model_version"] == 1
        assert row["error"].split(":")[0] == EXPECTED_ERRORS.get(name, ""), row
        if name not in EXPECTED_ERRORS or name == "truncated.jpg":
            assert row["sha256"] == hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
    assert rows["png_named.jpg"]["label"] in ("cats", "dogs")

    code, out, err = run_cli(["predict", model, images, "--json"], capsys)
    assert code == 2  # imgclf predict also refuses the damaged files
    online = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    classified = [name for name in rows if name not in EXPECTED_ERRORS]
    assert len(classified) == 13
    for name in classified:
        assert rows[name]["label"] == online[name]["label"]
        assert rows[name]["confidence"] == pytest.approx(online[name]["confidence"], abs=1e-5)
        for label, score in online[name]["scores"].items():
            assert rows[name][f"score_{label}"] == pytest.approx(score, abs=1e-5)
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["images"] == 18 and summary["errors"] == 5 and "accuracy" not in summary


def test_glob_and_labelled_manifest(local_ray, images, cats_dogs_registry, tmp_path, capsys):
    model = f"{cats_dogs_registry / 'cats_dogs'}@stable"
    glob = f"{images}/*/*.jpg"
    code, out, err = run_cli(["predict-batch", glob, "--model", model, "--out", tmp_path / "glob"], capsys)
    assert code == 0, err
    rows = _rows(tmp_path / "glob")
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in images.glob("*/*.jpg"))
    assert pq.read_schema(next((tmp_path / "glob").glob("part-*.parquet"))).names[:4] == [
        "path", "sha256", "label", "confidence"
    ]  # fmt: skip

    manifest = tmp_path / "manifest.csv"
    listed = [(f"{images}/cats/{p.name}", "cats") for p in sorted((images / "cats").iterdir())]
    listed += [(f"{images}/dogs/{p.name}", "dogs") for p in sorted((images / "dogs").iterdir())]
    listed += [listed[0], (f"{images}/odd/truncated.jpg", "cats")]  # a repeated row; a damaged file
    manifest.write_text("path,label\n" + "".join(f"{path},{label}\n" for path, label in listed))
    code, out, err = run_cli(["predict-batch", manifest, "--model", model, "--out", tmp_path / "manifest",
                              "--format", "csv"], capsys)  # fmt: skip
    assert code == 0, err
    rows = _rows(tmp_path / "manifest")
    assert Counter(r["path"] for r in rows) == Counter(path for path, _ in listed)
    judged = [r for r in rows if not r["error"]]
    accuracy = sum(r["label"] == r["true_label"] for r in judged) / len(judged)
    summary = json.loads((tmp_path / "manifest" / "_summary.json").read_text())
    assert summary["labelled"] == 13 and summary["errors"] == 1
    assert summary["accuracy"] == pytest.approx(accuracy)
    assert set(summary["per_class"]) == {"cats", "dogs"} and summary["per_class"]["cats"]["support"] == 7
    assert f"accuracy {accuracy:.4f} over 13 labelled images" in out
    assert "errors: truncated_image 1" in out


def test_a_killed_job_resumed_writes_each_input_exactly_once(local_ray, images, cats_dogs_registry, tmp_path, capsys):
    files = sorted(str(p) for p in images.glob("*/*") if p.parent.name != "odd")
    manifest = tmp_path / "repeated.csv"
    manifest.write_text("path\n" + "".join(f"{path}\n" for path in files * 20))  # 240 inputs, each file 20 times
    out = tmp_path / "out"
    ray_dir = short_temp_dir()
    env = client_env(ray_dir, marker := os.urandom(8).hex())
    command = [sys.executable, "-m", "imgclf.cli", "predict-batch", str(manifest), "--model",
               str(cats_dogs_registry / "cats_dogs"), "--out", str(out), "--batch-size", "2", "--concurrency", "1",
               "--rows-per-file", "4"]  # fmt: skip
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.parquet"))) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        stop_marked(marker)  # its embedded Ray (raylet, GCS, workers) goes with it
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert not marked_processes(marker)
    before = len(_rows(out))
    assert 8 <= before < 240, f"the job was not killed midway ({before} rows written)"

    code, stdout, err = run_cli(["predict-batch", manifest, "--model", cats_dogs_registry / "cats_dogs", "--out", out,
                                 "--resume", "--batch-size", "8"], capsys)  # fmt: skip
    assert code == 0, err
    assert f"{240 - before} images ({before} already done)" in stdout
    rows = _rows(out)
    assert Counter(r["path"] for r in rows) == Counter(files * 20)
    assert all(not r["error"] for r in rows)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("source", "no such file, folder or manifest"),
        ("glob", "no files in"),
        ("model", "no model 'nope'"),
        ("version", "has no version 9"),
        ("label", "no version labelled 'gold'"),
        ("format", "invalid --format 'xlsx'"),
        ("batch_size", "invalid --batch-size 0"),
        ("manifest", "has no 'path' column"),
        ("out_taken", "already holds 1 result file(s): add --resume"),
    ],
)
def test_bad_arguments_get_one_line(case, fragment, images, cats_dogs_registry, tmp_path, capsys):
    model = cats_dogs_registry / "cats_dogs"
    args = {"source": images, "model": model, "out": tmp_path / "out"}
    extra: list = []
    if case == "source":
        args["source"] = tmp_path / "missing"
    elif case == "glob":
        args["source"] = f"{images}/*.tiff"
    elif case == "model":
        args["model"] = cats_dogs_registry / "nope"
    elif case == "version":
        args["model"] = model / "9"
    elif case == "label":
        args["model"] = f"{model}@gold"
    elif case == "format":
        extra = ["--format", "xlsx"]
    elif case == "batch_size":
        extra = ["--batch-size", "0"]
    elif case == "manifest":
        args["source"] = tmp_path / "list.csv"
        args["source"].write_text("file,label\na.jpg,cats\n")
    elif case == "out_taken":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "part-00000.parquet").write_bytes(b"")
    code, _, err = run_cli(["predict-batch", args["source"], "--model", args["model"], "--out", args["out"], *extra],
                           capsys)  # fmt: skip
    one_error_line(code, err, fragment)
