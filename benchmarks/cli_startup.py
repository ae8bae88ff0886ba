"""How fast the command line answers when it needs no model (issue 19, target < 1 s each).

Runs each command ``--repeat`` times as a fresh process (``.venv/bin/imgclf``, as a user types it)
and reports the median and worst wall time, plus ``python -c pass`` from the same interpreter as
the floor every command pays. For comparison, the time of ``import tensorflow`` alone.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMGCLF = str(REPO / ".venv" / "bin" / "imgclf")


def timed(command: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - start, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    commands = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "imgclf --help": [IMGCLF, "--help"],
        "imgclf train --help": [IMGCLF, "train", "--help"],
        "train, missing data": [IMGCLF, "train", str(scratch / "missing"), "--out", str(scratch / "run")],
        "evaluate, missing run": [IMGCLF, "evaluate", str(scratch / "missing")],
        "predict, missing image": [IMGCLF, "predict", str(scratch), str(scratch / "missing.jpg")],
        "data check, missing data": [IMGCLF, "data", "check", str(scratch / "missing")],
        "import tensorflow (for comparison)": [sys.executable, "-c", "import tensorflow"],
    }
    print("| command | median s | worst s | exit | last stderr line |\n|---|---|---|---|---|")
    for name, command in commands.items():
        runs = [timed(command) for _ in range(args.repeat if "tensorflow" not in name else 3)]
        seconds = [r[0] for r in runs]
        print(
            f"| {name} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | {runs[0][1]} | {runs[0][2][:70]} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
