"""The layout of a training run directory, in one place.

::

    RUN_DIR/
      config.json          the resolved TrainConfig
      labels.txt           class names, one per line, in model output order
      data_manifest.csv    every file used, with label and split (train/val)
      data_summary.json    counts, skipped files, data fingerprint
      history.csv          one row per epoch (both fine-tuning phases)
      learning_curves.png  loss and accuracy per epoch
      progress.json        which training phases are complete (for --resume)
      tensorboard/         TensorBoard logs
      weights/best.keras   the best checkpoint (lowest validation loss)
      backup/              Keras BackupAndRestore state while a phase runs
      eval/                written by `imgclf evaluate` (by training: baseline.json, the baseline guard;
                           calibration.json, the temperature folded into the scores layer)
      lineage.json         written by `imgclf retrain`: parent version, data counts, trigger
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import RunDirError


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def labels(self) -> Path:
        return self.path / "labels.txt"

    @property
    def manifest(self) -> Path:
        return self.path / "data_manifest.csv"

    @property
    def data_summary(self) -> Path:
        return self.path / "data_summary.json"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def learning_curves(self) -> Path:
        return self.path / "learning_curves.png"

    @property
    def progress(self) -> Path:
        return self.path / "progress.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "weights" / "best.keras"

    def backup(self, phase: str) -> Path:
        return self.path / "backup" / phase

    @property
    def lineage(self) -> Path:
        """Written by ``imgclf retrain``: where the run came from (parent version, data, trigger)."""
        return self.path / "lineage.json"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def baseline(self) -> Path:
        """Written by training: the linear probe on frozen features against the fine-tuned model."""
        return self.eval_dir / "baseline.json"

    @property
    def calibration(self) -> Path:
        """Written by training: the temperature fitted on validation and folded into the scores layer."""
        return self.eval_dir / "calibration.json"

    def read_labels(self) -> list[str]:
        if not self.labels.is_file():
            raise RunDirError(f"{self.path} is not a training run (no labels.txt)")
        return [line for line in self.labels.read_text(encoding="utf-8").splitlines() if line]

    def read_progress(self) -> dict[str, Any]:
        if self.progress.is_file():
            return json.loads(self.progress.read_text(encoding="utf-8"))
        return {}

    def write_progress(self, progress: dict[str, Any]) -> None:
        write_json(self.progress, progress)

    def finished_an_epoch(self) -> bool:
        """Whether training ever completed an epoch here (a checkpoint, a history row or a finished phase)."""
        if self.best_checkpoint.is_file() or self.read_progress().get("head_done"):
            return True
        if self.history.is_file():
            return len(self.history.read_text(encoding="utf-8").strip().splitlines()) > 1  # a header and a row
        return False

    def clear(self) -> None:
        """Remove what a start wrote (config, data lists, logs, checkpoints); other files stay."""
        for path in (self.config, self.labels, self.manifest, self.data_summary, self.history, self.progress,
                     self.learning_curves):  # fmt: skip
            path.unlink(missing_ok=True)
        for folder in (self.tensorboard, self.path / "backup", self.best_checkpoint.parent):
            shutil.rmtree(folder, ignore_errors=True)

    def require_trained(self) -> None:
        if not self.path.is_dir():
            raise RunDirError(f"run directory does not exist: {self.path}")
        if not self.best_checkpoint.is_file():
            raise RunDirError(f"{self.path} has no trained model (missing weights/best.keras)")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
