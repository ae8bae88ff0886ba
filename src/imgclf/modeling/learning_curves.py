"""The learning curves a training run saves beside its history (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_learning_curves(history_csv: Path, out: Path) -> Path | None:
    """Loss and accuracy per epoch, training and validation."""
    if not history_csv.is_file():
        return None
    history = pd.read_csv(history_csv)
    if history.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column, style in ((metric, "-"), (f"val_{metric}", "--")):
            if column in history:
                ax.plot(history["epoch"] + 1, history[column], style, marker="o", label=column)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
