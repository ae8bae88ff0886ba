"""The search's leaderboard: one row per trial (CSV) and a chart of the validation accuracies (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

COLOURS = {"COMPLETE": "tab:blue", "PRUNED": "tab:gray", "FAIL": "tab:red", "RUNNING": "tab:orange"}


def leaderboard(study: optuna.Study) -> pd.DataFrame:
    """Trials, best first: number, state, validation accuracy and loss, epochs, seconds, every parameter."""
    rows = []
    for trial in study.trials:
        last_report = max(trial.intermediate_values) if trial.intermediate_values else None
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "val_accuracy": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
                "val_loss": trial.user_attrs.get("val_loss"),
                "epochs_run": trial.user_attrs.get("epochs_run", None if last_report is None else last_report + 1),
                "last_reported_accuracy": None if last_report is None else trial.intermediate_values[last_report],
                "seconds": None if seconds is None else round(seconds, 1),
                **trial.params,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["val_accuracy", "trial"], ascending=[False, True], na_position="last")


def write_leaderboard(study: optuna.Study, csv_path: Path, png_path: Path) -> pd.DataFrame:
    frame = leaderboard(study)
    frame.to_csv(csv_path, index=False)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    if not frame.empty:
        ordered = frame.sort_values("trial")
        heights = ordered["val_accuracy"].fillna(ordered["last_reported_accuracy"]).fillna(0.0)
        colours = [COLOURS.get(state, "tab:gray") for state in ordered["state"]]
        axes.bar(ordered["trial"].astype(str), heights, color=colours)
        lowest = float(heights[heights > 0].min()) if (heights > 0).any() else 0.0
        axes.set_ylim(max(0.0, lowest - 0.05), min(1.0, float(heights.max()) + 0.02))
        for state, colour in COLOURS.items():
            if state in set(ordered["state"]):
                axes.bar([], [], color=colour, label=state.lower())
        axes.legend(loc="lower right")
    axes.set_xlabel("trial")
    axes.set_ylabel("validation accuracy (pruned: last reported)")
    axes.set_title("imgclf tune: trials")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return frame
