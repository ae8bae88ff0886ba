"""The command line: real commands, one readable line and a non-zero exit on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import write_csv
from tests.helpers import _one_error_line, run_cli

pytestmark = pytest.mark.slow
IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def _dataset(root: Path, classes: dict[str, int], shapes_dir: Path) -> Path:
    for label, count in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        source = sorted((shapes_dir / "circle").iterdir())
        for image in source[:count]:
            (root / label / image.name).write_bytes(image.read_bytes())
    return root


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing", "does not exist"),
        ("empty", "no class folders"),
        ("one_class", "only one class"),
        ("one_image", "fewer than 2 usable images: b"),
        ("not_images", "no usable images"),
        ("csv_columns", "missing column(s): label"),
        ("csv_files", "missing file(s)"),
    ],
)
def test_train_bad_data(case, fragment, tmp_path, shapes_dir, capsys):
    data = tmp_path / "data"
    if case == "empty":
        data.mkdir()
    elif case == "one_class":
        _dataset(data, {"a": 3}, shapes_dir)
    elif case == "one_image":
        _dataset(data, {"a": 3, "b": 1}, shapes_dir)
    elif case == "not_images":
        for label in ("a", "b"):
            (data / label).mkdir(parents=True)
            (data / label / "x.jpg").write_text("text renamed to .jpg")
    elif case == "csv_columns":
        data = write_csv(tmp_path / "m.csv", [["a.png"]], header=["path"])
    elif case == "csv_files":
        data = write_csv(tmp_path / "m.csv", [["gone.png", "a", ""]])
    code, _, err = run_cli(["train", data, "--out", tmp_path / "run", "--model", "small_cnn"], capsys)
    _one_error_line(code, err, fragment)
    assert not (tmp_path / "run" / "weights").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--model", "vgg99"], "invalid --model"),
        (["--model", "mobilenet_v2", "--image-size", "16", "--weights", "none"], "too small for mobilenet_v2"),
        (["--model", "mobilenet_v2", "--image-size", "100"], "ImageNet weights for mobilenet_v2 exist for image sizes"),
        (["--model", "mobilenet_v2", "--weights", "/no/such/file.h5"], "weights file not found"),
        (["--model", "resnet50", "--alpha", "0.5", "--weights", "none"], "--alpha applies"),
        (["--model", "small_cnn", "--epochs", "0"], "invalid --epochs"),
    ],
)
def test_train_bad_options(options, fragment, tmp_path, shapes_dir, capsys):
    code, _, err = run_cli(["train", shapes_dir, "--out", tmp_path / "run", *options], capsys)
    _one_error_line(code, err, fragment)


def test_wrong_weights_file_for_the_backbone(tmp_path, shapes_dir, mobilenet_v1_weights, capsys):
    args = [
        "train",
        shapes_dir,
        "--out",
        tmp_path / "run",
        "--model",
        "mobilenet_v2",
        "--alpha",
        "0.35",
        "--weights",
        mobilenet_v1_weights,
        "--image-size",
        "64",
    ]
    code, _, err = run_cli(args, capsys)
    _one_error_line(code, err, "does not fit mobilenet_v2")


def test_evaluate_and_export_need_a_trained_run(tmp_path, capsys):
    code, _, err = run_cli(["evaluate", tmp_path / "nothing"], capsys)
    _one_error_line(code, err, "run directory does not exist")
    code, _, err = run_cli(["export", tmp_path, "--registry", tmp_path / "reg"], capsys)
    _one_error_line(code, err, "no trained model")


def test_data_check_and_split_commands(shapes_dir, tmp_path, capsys):
    code, out, _ = run_cli(["data", "check", shapes_dir, "--json", tmp_path / "report.json"], capsys)
    assert code == 0 and "imbalance ratio" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["files"] == 120 and report["classes"] == ["circle", "square", "triangle"]
    code, _, _ = run_cli(
        [
            "data",
            "split",
            shapes_dir,
            "--out",
            tmp_path / "split.csv",
            "--val",
            "0.25",
            "--test",
            "0.25",
            "--seed",
            "3",
        ],
        capsys,
    )
    assert code == 0
    frame = pd.read_csv(tmp_path / "split.csv")
    assert frame["split"].value_counts().to_dict() == {"train": 60, "val": 30, "test": 30}


def test_predict_command(shapes_run, tmp_path, capsys):
    code, _, _ = run_cli(["export", shapes_run.path, "--registry", tmp_path / "reg", "--name", "s"], capsys)
    assert code == 0
    image = sorted(load_val_paths(shapes_run))[0]
    code, out, _ = run_cli(["predict", tmp_path / "reg" / "s", image, "--json"], capsys)
    assert code == 0
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["label"] in ("circle", "square", "triangle") and abs(sum(answer["scores"].values()) - 1) < 1e-4
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = run_cli(["predict", tmp_path / "reg" / "s", image, bad], capsys)
    assert code == 2 and "1 of 2 file(s) could not be classified" in err and "Traceback" not in err


def load_val_paths(run) -> list[str]:
    frame = pd.read_csv(run.manifest)
    return frame[frame["split"] == "val"]["path"].tolist()


@pytest.mark.slow
def test_resume_after_the_process_is_killed(shapes_dir, tmp_path):
    """Kill a real training process mid-run, resume it, and get every epoch exactly once."""
    out = tmp_path / "run"
    args = [
        *IMGCLF,
        "train",
        str(shapes_dir),
        "--out",
        str(out),
        "--model",
        "small_cnn",
        "--image-size",
        "32",
        "--epochs",
        "30",
        "--patience",
        "30",
        "--batch-size",
        "16",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = out / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if history.is_file() and len(history.read_text().splitlines()) >= 4:  # 3 epochs logged
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_before = len(pd.read_csv(history))
    assert 3 <= epochs_before < 30, "the run finished before it could be interrupted"
    assert any((out / "backup").rglob("*")), "no backup to resume from"

    resumed = subprocess.run(
        [*IMGCLF, "train", str(shapes_dir), "--out", str(out), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = pd.read_csv(history)["epoch"].tolist()
    assert epochs[-1] == 29
    assert epochs == sorted(set(epochs))  # no epoch run twice
    assert len(epochs) >= 29  # at most the epoch in flight at the kill is missing from the log


def test_export_refuses_labels_it_cannot_write_back(shapes_run, tmp_path, capsys):
    """Issue 17: a label with a line break (from a review, before labels were checked) gave labels.txt
    more lines than the model has classes, and every prediction of that export failed."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(shapes_run.path, run)
    classes = (run / "labels.txt").read_text().split()
    (run / "labels.txt").write_text("\n".join(["circle\nfox", *classes[1:]]) + "\n")
    (tmp_path / "registry").mkdir()
    refused = run_cli(["export", run, "--registry", tmp_path / "registry"], capsys)
    _one_error_line(*refused[::2], "names 4 classes but the model has 3")
    (run / "labels.txt").write_text("\n".join(["circ\tle", *classes[1:]]) + "\n")
    _one_error_line(*run_cli(["export", run, "--registry", tmp_path / "registry"], capsys)[::2], "control character")
    assert not list((tmp_path / "registry").rglob("saved_model.pb"))
