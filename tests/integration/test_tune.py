"""``imgclf tune`` (issue 21): a time-boxed recipe search that finishes within its budget, writes a
leaderboard and a config ``imgclf train --config`` accepts, and continues after being killed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.helpers import _one_error_line, run_cli

pytestmark = pytest.mark.slow
IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def _states(database) -> list[str]:
    """Each trial's state, in order; the last one marked ``RUNNING+`` once it has drawn its recipe."""
    if not database.exists():
        return []
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            rows = connection.execute(
                "SELECT t.state, (SELECT COUNT(*) FROM trial_params p WHERE p.trial_id = t.trial_id) "
                "FROM trials t ORDER BY t.number"
            ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return []
    return [state + ("+" if state == "RUNNING" and params else "") for state, params in rows]


def test_tune_is_killed_resumed_and_its_best_recipe_trains(shapes_dir, tmp_path, capsys):
    out = tmp_path / "search"
    common = ["--out", str(out), "--model", "small_cnn", "--image-size", "32", "--batch-size", "16", "--seed", "3"]
    first = subprocess.Popen([*IMGCLF, "tune", str(shapes_dir), *common, "--budget", "10m"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            states = _states(out / "study.db")
            if states.count("COMPLETE") >= 1 and states[-1] == "RUNNING+":  # killed mid-trial
                break
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[0]
        first.send_signal(signal.SIGKILL)  # mid-trial, with no chance to clean up
    finally:
        first.wait(30)
    before = _states(out / "study.db")
    assert before[-1] == "RUNNING+"

    code, _, err = run_cli(["tune", shapes_dir, *common, "--budget", "1m"], capsys)
    _one_error_line(code, err, "already holds a search; pass --resume")

    started = time.monotonic()
    resumed = subprocess.run(
        [*IMGCLF, "tune", str(shapes_dir), *common, "--budget", "1m", "--trials", str(len(before) + 2), "--resume"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert time.monotonic() - started < 60 + 120  # the budget, then the final model (and process start)
    assert f"Trial {len(before) - 1} was interrupted: running its recipe again" in resumed.stdout
    after = _states(out / "study.db")
    assert after[: len(before) - 1] == before[:-1]  # finished trials are kept
    assert after[len(before) - 1] == "FAIL"
    assert len(before) + 1 <= len(after) <= len(before) + 2  # the rerun, and one more if the minute allows
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["trial"]) == list(range(len(after)))
    interrupted = board.set_index("trial").loc[len(before) - 1]
    rerun = board.set_index("trial").loc[len(before)]  # the interrupted recipe, queued first
    assert rerun["learning_rate"] == pytest.approx(interrupted["learning_rate"])
    assert (out / "leaderboard.png").stat().st_size > 0
    assert board.iloc[0]["state"] == "COMPLETE"  # best first
    assert (out / "final" / "weights" / "best.keras").is_file()

    best = json.loads((out / "best_config.json").read_text())
    assert best["learning_rate"] == pytest.approx(board.iloc[0]["learning_rate"])
    code, text, err = run_cli(["train", "--config", out / "best_config.json", "--out", tmp_path / "again",
                               "--epochs", "1"], capsys)  # fmt: skip
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["epochs"] == 1 and again["learning_rate"] == pytest.approx(best["learning_rate"])
    assert again["data"] == best["data"]


def test_tune_bad_budget_answers_before_tensorflow(tmp_path, shapes_dir, capsys):
    code, _, err = run_cli(["tune", shapes_dir, "--out", tmp_path / "s", "--budget", "soon"], capsys)
    _one_error_line(code, err, "invalid --budget 'soon'")
