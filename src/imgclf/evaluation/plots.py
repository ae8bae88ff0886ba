"""PNG plots for runs and evaluations (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], out: Path, normalize: bool) -> Path:
    values = matrix.astype(np.float64)
    if normalize:
        values = np.divide(
            values,
            values.sum(axis=1, keepdims=True),
            out=np.zeros_like(values),
            where=values.sum(axis=1, keepdims=True) > 0,
        )
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalized)" if normalize else " (counts)"))
    top = values.max() if values.size else 0
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        ax.text(j, i, text, ha="center", va="center", color="white" if value > top / 2 else "black")
    return _save(fig, out)


def plot_roc_pr(y_true: np.ndarray, scores: np.ndarray, classes: list[str], out_dir: Path) -> list[Path]:
    """ROC and precision-recall curves, one line per class (one-vs-rest; positive class if binary)."""
    which = [1] if len(classes) == 2 else range(len(classes))
    fig_roc, ax_roc = plt.subplots(figsize=(5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 5))
    for c in which:
        positives = y_true == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = skm.roc_curve(positives, scores[:, c])
        precision, recall, _ = skm.precision_recall_curve(positives, scores[:, c])
        ax_roc.plot(fpr, tpr, label=f"{classes[c]} (AUC {skm.auc(fpr, tpr):.3f})")
        ax_pr.plot(
            recall, precision, label=f"{classes[c]} (AP {skm.average_precision_score(positives, scores[:, c]):.3f})"
        )
    ax_roc.plot([0, 1], [0, 1], ":", color="grey")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8)
    return [_save(fig_roc, out_dir / "roc_curve.png"), _save(fig_pr, out_dir / "pr_curve.png")]


def reliability_bins(y_true: np.ndarray, scores: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    """Per non-empty confidence bin: mean confidence, accuracy and how many predictions it holds."""
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        {
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def reliability_figure(y_true: np.ndarray, scores: np.ndarray, bins: int = 15) -> plt.Figure:
    """Accuracy against confidence per bin, each point labelled with its count, the counts as bars below."""
    points = reliability_bins(y_true, scores, bins)
    fig, (ax, ax_counts) = plt.subplots(
        2, 1, figsize=(5, 6.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([p["confidence"] for p in points], [p["accuracy"] for p in points], marker="o")
    for point in points:
        ax.annotate(
            f"n={point['count']}", (point["confidence"], point["accuracy"]), textcoords="offset points",
            xytext=(0, 6), ha="center", fontsize=7,
        )  # fmt: skip
    ax.set(ylabel="accuracy", title="reliability", xlim=(0, 1), ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    ax_counts.bar([p["confidence"] for p in points], [p["count"] for p in points], width=1 / bins * 0.8)
    ax_counts.set(xlabel="confidence", ylabel="predictions")
    ax_counts.grid(alpha=0.3)
    return fig


def plot_reliability(y_true: np.ndarray, scores: np.ndarray, out: Path, bins: int = 15) -> Path:
    """``reliability_figure`` saved to ``out``: a calibrated model lies on the diagonal."""
    return _save(reliability_figure(y_true, scores, bins), out)


def worst_mistakes_figure(
    paths: list[str], y_true: np.ndarray, scores: np.ndarray, classes: list[str], count: int = 16
) -> plt.Figure | None:
    """The most confident wrong predictions: each image with its file name, true and predicted labels."""
    predicted = scores.argmax(axis=1)
    wrong = np.nonzero(predicted != y_true)[0]
    if not len(wrong):
        return None
    worst = wrong[np.argsort(-scores[wrong, predicted[wrong]])][:count]
    columns = min(4, len(worst))
    rows = int(np.ceil(len(worst) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst, strict=False):
        with Image.open(paths[i]) as image:
            image.thumbnail((256, 256))
            ax.imshow(image.convert("RGB"))
        name = Path(paths[i]).name
        name = name if len(name) <= 32 else name[:14] + "…" + name[-16:]
        ax.set_title(
            f"{name}\ntrue {classes[y_true[i]]}\npred {classes[predicted[i]]} {scores[i, predicted[i]]:.2f}",
            fontsize=8,
        )
    return fig


def plot_worst_mistakes(
    paths: list[str], y_true: np.ndarray, scores: np.ndarray, classes: list[str], out: Path, count: int = 16
) -> Path | None:
    """``worst_mistakes_figure`` saved to ``out`` (None when nothing was wrong)."""
    fig = worst_mistakes_figure(paths, y_true, scores, classes, count)
    return None if fig is None else _save(fig, out)
