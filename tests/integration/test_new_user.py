"""Issue 19: what a new user trips over on the command line (restarts, resume, quiet fast errors,
tables, folders for predict, the next command to run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf.config import TrainConfig
from tests.helpers import one_error_line, run_cli

IMGCLF = [sys.executable, "-m", "imgclf.cli"]
NATIVE_NOISE = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN", "_DefaultDistributionStrategy")


@pytest.mark.slow
def test_a_start_that_never_finished_an_epoch_can_be_restarted(
    shapes_dir, mobilenet_v1_weights, mobilenet_v2_weights, tmp_path, capsys
):
    out = tmp_path / "run"
    # A failed start (here: weights that do not fit the backbone) has already written config and manifests.
    code, _, err = run_cli(
        ["train", shapes_dir, "--out", out, "--model", "mobilenet_v2", "--alpha", "0.35",
         "--weights", mobilenet_v1_weights, "--image-size", "64"],
        capsys,
    )  # fmt: skip
    one_error_line(code, err, "does not fit mobilenet_v2")
    assert (out / "config.json").is_file()
    # --resume keeps the saved config: options that contradict it are refused, by name.
    code, _, err = run_cli(["train", shapes_dir, "--out", out, "--resume", "--weights", mobilenet_v2_weights], capsys)
    one_error_line(code, err, "contradict: weights")
    assert "never finished an epoch" in err
    # Without --resume the run starts again with the new options.
    code, out_text, err = run_cli(
        ["train", shapes_dir, "--out", out, "--model", "small_cnn", "--image-size", "32", "--epochs", "1"], capsys
    )
    assert code == 0, err
    assert "earlier start never finished an epoch" in out_text
    assert TrainConfig.load(out / "config.json").model == "small_cnn"
    assert f"imgclf evaluate {out}" in out_text  # the next command
    assert "training with 0 group(s) of duplicate images" in out_text
    assert "the CPU" in out_text and "Strategy" not in out_text
    # Once an epoch is done, the directory is a run: a new start is refused, --resume with its options is fine.
    code, _, err = run_cli(["train", shapes_dir, "--out", out, "--model", "small_cnn"], capsys)
    one_error_line(code, err, "already holds a training run")
    code, _, err = run_cli(["train", shapes_dir, "--out", out, "--resume", "--model", "small_cnn"], capsys)
    assert code == 0, err


def _tensorflow_free(args: list[str]) -> tuple[int, str, bool]:
    """Run the CLI in a fresh interpreter; say whether it imported TensorFlow."""
    script = (
        "import sys\nfrom imgclf.cli import main\n"
        f"try:\n    main({[str(a) for a in args]!r})\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print('TF' if 'tensorflow' in sys.modules else 'noTF', code, file=sys.stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    verdict, code = done.stdout.split()[-2:]
    return int(code), done.stderr, verdict == "TF"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "/no/such/data", "--out", "/tmp/x"], "dataset path does not exist: /no/such/data"),
        (["train", ".", "/no/such.csv", "--out", "/tmp/x"], "dataset path does not exist: /no/such.csv"),
        (["train", ".", "--out", "/tmp/x", "--exclude", "/no/report.json"], "--exclude report does not exist"),
        (["train", ".", "--out", "/tmp/x", "--weights", "/no/w.h5"], "weights file not found"),
        (["evaluate", "/no/run"], "run directory does not exist"),
        (["export", "/no/run", "--registry", "/tmp/r"], "run directory does not exist"),
        (["predict", "/no/model", "x.jpg"], "no such file or folder: x.jpg"),
        (["predict", ".", "/no/image.jpg"], "no such file or folder: /no/image.jpg"),
    ],
)
def test_argument_errors_answer_before_tensorflow_loads(args, fragment):
    code, err, imported = _tensorflow_free(args)
    one_error_line(code, err, fragment)
    assert not imported


def test_help_does_not_load_tensorflow():
    code, _, imported = _tensorflow_free(["--help"])
    assert code == 0 and not imported


def test_predict_is_quiet_and_takes_folders_and_globs(shapes_run, shapes_dir, tmp_path, capsys):
    code, out, _ = run_cli(["export", shapes_run.path, "--registry", tmp_path / "reg", "--name", "s"], capsys)
    assert code == 0 and f"imgclf predict {tmp_path / 'reg' / 's' / '1'}" in out  # the next command
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    sources = sorted(p for p in shapes_dir.rglob("*") if p.is_file())
    for index, source in enumerate(sources[:3]):
        (folder / ("sub" if index else "") / f"{index}.png").write_bytes(source.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [*IMGCLF, "predict", str(tmp_path / "reg" / "s"), str(folder), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(Path(a["path"]).name for a in answers) == ["0.png", "1.png", "2.png"]
    assert not [noise for noise in NATIVE_NOISE if noise in done.stderr], done.stderr
    done = subprocess.run(
        [*IMGCLF, "predict", str(tmp_path / "reg" / "s"), str(folder / "**" / "*.png"), "--verbose"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len([line for line in done.stdout.splitlines() if ".png:" in line]) == 3
    # --verbose shows what is hidden otherwise (on this GPU-less machine: TensorFlow's CUDA probe)
    assert "cuda" in done.stderr.lower() or "absl" in done.stderr


def test_tables_print_whole_values_when_piped_and_json_on_request(shapes_run, tmp_path, capsys):
    name = "a_model_name_long_enough_to_be_cut_at_eighty_columns_by_a_table"
    code, _, _ = run_cli(["export", shapes_run.path, "--registry", tmp_path / "reg", "--name", name], capsys)
    assert code == 0
    done = subprocess.run(
        [*IMGCLF, "models", "list", "--registry", str(tmp_path / "reg")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert name in done.stdout and "…" not in done.stdout
    code, out, _ = run_cli(["models", "list", "--registry", tmp_path / "reg", "--json"], capsys)
    listed = json.loads(out)
    assert code == 0 and listed[0]["model"] == name and listed[0]["version"] == 1


def test_a_table_on_an_80_column_terminal_folds_instead_of_cutting():
    from rich.console import Console

    from imgclf.cli.base import table

    rows = table("model", "version", "classes", "labels")
    long_value = "sunflowers_and_dandelions_and_roses_and_tulips_and_daisies_0123456789"
    rows.add_row(long_value, "12", "5", "stable,canary,previous")
    terminal = Console(width=80, force_terminal=True, color_system=None, record=True)
    terminal.print(rows)
    text = terminal.export_text()
    assert "…" not in text
    assert long_value in "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2)
    assert max(len(line) for line in text.splitlines()) <= 80
