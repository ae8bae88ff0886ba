"""``imgclf tune``: a time-boxed search over the training recipe, then the final model.

Optuna drives the search: its TPE sampler (seeded) proposes recipes and its Hyperband pruner stops
trials whose validation accuracy after an epoch is behind the others' at the same epoch. Every
trial trains on the training split and is judged on the validation split only (the accuracy of
the checkpoint training keeps: the epoch of lowest validation loss). The first trial is the
data-aware default recipe. The study lives in ``OUT/study.db`` (SQLite), so ``resume`` continues
an interrupted search: finished trials are kept, and the trial that was running when it stopped is
run again.

``OUT/`` holds ``study.db``, ``trials/NNNN/`` (each trial's run directory), ``leaderboard.csv``
and ``leaderboard.png``, ``best_config.json`` (a file ``imgclf train --config`` accepts) and
``final/`` (the model trained with the best recipe: a copy of the best trial's run, the model that
was measured, with its baseline guard).

Example:

>>> result = tune(TrainConfig(data="data/flowers", out="tune/flowers", model="mobilenet_v2", alpha=0.35,
...                           weights="mobilenet_v2_0.35_224_no_top.weights.h5"), budget_s=1800)
>>> result.best_value, result.final_run
(0.921, RunDir(path=PosixPath('tune/flowers/final')))
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna
import pandas as pd

from imgclf.config import TrainConfig
from imgclf.data.checks import load_flagged_files
from imgclf.data.prepare import prepare_training_data
from imgclf.data.sources import load_dataset
from imgclf.errors import ConfigError, RunDirError
from imgclf.modeling.defaults import choose_defaults, size_ladder
from imgclf.modeling.training import adopt_run, resolve_config, train
from imgclf.run_dir import RunDir, write_json
from imgclf.tuning.leaderboard import write_leaderboard
from imgclf.tuning.space import SearchSpace, apply

Reporter = Callable[[str], object]
STUDY_NAME = "imgclf-tune"
# Options that define the task rather than the recipe: never searched.
NOT_SEARCHED = {"data", "out", "model", "alpha", "weights", "seed", "batch_size", "val_fraction", "exclude",
                "mixed_precision", "cache", "init_from", "keep_best", "calibrate", "resize_mode", "class_weights",
                "early_stopping_patience", "chosen"}  # fmt: skip


@dataclass
class TuneResult:
    out: Path
    best_value: float | None
    best_params: dict[str, Any]
    trials: int
    best_config: Path | None
    final_run: RunDir | None


class _Pruning(keras.callbacks.Callback):
    """Reports validation accuracy after each epoch; stops a trial the pruner (or the budget) rejects."""

    def __init__(self, trial: optuna.Trial, deadline: float) -> None:
        super().__init__()
        self.trial, self.deadline = trial, deadline

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), step=epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {value:.4f} after epoch {epoch + 1}")
        if time.monotonic() > self.deadline:
            raise optuna.TrialPruned("the time budget ran out")


def checkpoint_accuracy(run: RunDir) -> tuple[float, float, int]:
    """Validation accuracy and loss at the epoch training kept (lowest validation loss), and epochs run."""
    history = pd.read_csv(run.history)
    best = history.loc[history["val_loss"].idxmin()]
    return float(best["val_accuracy"]), float(best["val_loss"]), len(history)


def _prepare_recipe(base: TrainConfig, report: Reporter) -> TrainConfig:
    """The data-aware default recipe for ``base`` (the data is read once, here)."""
    exclude = load_flagged_files(base.exclude) if base.exclude else ()
    datasets = [load_dataset(source) for source in base.sources]
    prepared = prepare_training_data(datasets, base.val_fraction, base.seed, exclude)
    recipe, reasons = choose_defaults(base, prepared)
    report(
        f"{len(prepared.classes)} classes, {len(prepared.split('train'))} training and "
        f"{len(prepared.split('val'))} validation images; default recipe:"
    )
    for option, why in reasons.items():
        report(f"  {option.replace('_', ' ')}: {why}")
    return recipe


def _open_study(out: Path, seed: int, resume: bool) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    database = out / "study.db"
    if database.exists() and not resume:
        raise RunDirError(f"{out} already holds a search; pass --resume to continue it, or choose another --out")
    if resume and not database.exists():
        raise RunDirError(f"nothing to resume: {out} has no study.db")
    out.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{database}")
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.HyperbandPruner(min_resource=2, reduction_factor=3),
        load_if_exists=True,
    )
    return study, storage


def _rerun_interrupted(study: optuna.Study, storage: optuna.storages.RDBStorage, report: Reporter) -> None:
    """Trials left running by a killed search: marked failed, and their recipes queued again."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:  # killed after its recipe was drawn
            study.enqueue_trial(trial.params, skip_if_exists=False)
            report(f"Trial {trial.number} was interrupted: running its recipe again")
        else:
            report(f"Trial {trial.number} was interrupted before it drew a recipe")


def tune(
    base: TrainConfig,
    budget_s: float,
    max_trials: int | None = None,
    resume: bool = False,
    final: bool = True,
    report: Reporter = print,
) -> TuneResult:
    """Search the recipe for ``base`` within ``budget_s`` seconds (and ``max_trials``); train the best."""
    if budget_s <= 0:
        raise ConfigError("the budget must be positive")
    out = Path(base.out).expanduser().resolve()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed = set(base.model_fields_set) - NOT_SEARCHED
    base = resolve_config(base)
    study, storage = _open_study(out, base.seed, resume)
    settings_path = out / "search.json"
    if resume and settings_path.is_file():
        recipe = TrainConfig.model_validate(json.loads(settings_path.read_text())["recipe"])
        fixed = set(json.loads(settings_path.read_text())["fixed"])
    else:
        recipe = _prepare_recipe(base, report)
        write_json(settings_path, {"recipe": recipe.model_dump(), "fixed": sorted(fixed), "budget_s": budget_s})
    space = SearchSpace.for_config(recipe, fixed, size_ladder(recipe))
    if not study.trials:
        study.enqueue_trial(space.defaults(recipe))
    _rerun_interrupted(study, storage, report)
    report(f"Searching {', '.join(space.options) or 'nothing (every option is fixed)'} for {budget_s / 60:.0f} min")

    started = time.monotonic()
    deadline = started + budget_s

    def objective(trial: optuna.Trial) -> float:
        values = space.sample(trial)
        config = apply(recipe, values).model_copy(update={"out": str(out / "trials" / f"{trial.number:04d}")})
        trial_started = time.monotonic()
        try:
            run = train(config, report=lambda _line: None, callbacks=[_Pruning(trial, deadline)], baseline=False)
        except optuna.TrialPruned as pruned:
            report(f"trial {trial.number}: pruned ({pruned}) after {time.monotonic() - trial_started:.0f} s")
            raise
        finally:
            keras.backend.clear_session()
        accuracy, loss, epochs = checkpoint_accuracy(run)
        trial.set_user_attr("val_loss", loss)
        trial.set_user_attr("epochs_run", epochs)
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = max([accuracy] + [t.value for t in finished if t.value is not None])
        report(
            f"trial {trial.number}: validation accuracy {accuracy:.4f} (best {best:.4f}) in "
            f"{time.monotonic() - trial_started:.0f} s; " + ", ".join(f"{k} {_short(v)}" for k, v in values.items())
        )
        return accuracy

    def out_of_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() >= deadline:
            study.stop()

    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = None if max_trials is None else max(0, max_trials - done)
    if remaining != 0:
        study.optimize(objective, n_trials=remaining, timeout=budget_s, callbacks=[out_of_time], catch=())
    write_leaderboard(study, out / "leaderboard.csv", out / "leaderboard.png")
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        report("No trial finished within the budget: give it more time (--budget)")
        return TuneResult(out, None, {}, len(study.trials), None, None)
    best = study.best_trial
    best_config = apply(recipe, best.params).model_copy(update={"out": str(out / "final"), "chosen": {}})
    best_path = out / "best_config.json"
    best_config.save(best_path)
    report(f"Best: trial {best.number}, validation accuracy {best.value:.4f}; recipe in {best_path}")
    final_run = None
    if final:
        final_path = Path(best_config.out)
        shutil.rmtree(final_path, ignore_errors=True)  # an earlier best's, or a copy interrupted midway
        report(f"The final model is trial {best.number}'s run: copying it to {final_path} ...")
        final_run = adopt_run(RunDir(out / "trials" / f"{best.number:04d}"), final_path, report)
    return TuneResult(out, best.value, dict(best.params), len(study.trials), best_path, final_run)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
