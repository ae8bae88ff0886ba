"""The learning curves a training run saves beside its history (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_learning_curves(history_csv: Path, out: Path, fine_tune_start: int | None = None) -> Path | None:
    """Loss and accuracy per epoch, training and validation; a line where fine-tuning began
    (``fine_tune_start``: the number of epochs before it)."""
    if not history_csv.is_file():
        return None
    history = pd.read_csv(history_csv)
    if history.empty:
        return None
    fig = learning_curves_figure(history, fine_tune_start)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def learning_curves_figure(history: pd.DataFrame, fine_tune_start: int | None = None) -> plt.Figure:
    """The figure ``plot_learning_curves`` saves, from a Keras CSVLogger history."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column, style in ((metric, "-"), (f"val_{metric}", "--")):
            if column in history:
                ax.plot(history["epoch"] + 1, history[column], style, marker="o", label=column)
        if fine_tune_start:
            ax.axvline(fine_tune_start + 0.5, color="gray", linestyle=":", label="fine-tuning starts")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
