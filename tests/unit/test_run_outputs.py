"""Issue 19 (4): the run's plots say what they show (fine-tuning start, whole epochs, bin counts,
file names) and Keras' progress bar knows how many batches an epoch has."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image


def test_learning_curves_mark_fine_tuning_and_use_whole_epochs():
    from imgclf.modeling.learning_curves import learning_curves_figure

    history = pd.DataFrame(
        {"epoch": range(5), "loss": [1, 0.8, 0.7, 0.5, 0.4], "val_loss": [1.1, 0.9, 0.8, 0.6, 0.6],
         "accuracy": [0.5, 0.6, 0.7, 0.8, 0.9], "val_accuracy": [0.5, 0.6, 0.6, 0.7, 0.8]}
    )  # fmt: skip
    figure = learning_curves_figure(history, fine_tune_start=3)
    figure.canvas.draw()
    for ax in figure.axes:
        assert any(line.get_label() == "fine-tuning starts" for line in ax.get_lines())
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    plain = learning_curves_figure(history)
    assert not any(line.get_label() == "fine-tuning starts" for line in plain.axes[0].get_lines())


def test_reliability_diagram_shows_how_many_predictions_each_bin_holds():
    from imgclf.evaluation.plots import reliability_bins, reliability_figure

    rng = np.random.default_rng(0)
    scores = rng.dirichlet([1, 1, 1], size=200)
    y_true = rng.integers(0, 3, 200)
    bins = reliability_bins(y_true, scores)
    assert sum(b["count"] for b in bins) == 200
    figure = reliability_figure(y_true, scores)
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert labels == [f"n={b['count']}" for b in bins]


def test_worst_mistakes_name_their_files(tmp_path):
    from imgclf.evaluation.plots import worst_mistakes_figure

    paths = []
    for i in range(3):
        path = tmp_path / f"photo_{i}.jpg"
        Image.new("RGB", (20, 20), (i * 80, 0, 0)).save(path)
        paths.append(str(path))
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    figure = worst_mistakes_figure(paths, np.array([1, 1, 1]), scores, ["a", "b"])
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert [t.splitlines()[0] for t in titles] == ["photo_0.jpg", "photo_2.jpg"]  # most confident mistake first


def test_progress_bar_knows_the_number_of_batches():
    from imgclf.modeling.training import _ProgressBar

    bar = _ProgressBar(steps=63)
    bar.set_params({"verbose": 1, "epochs": 2, "steps": None})
    assert bar.target == 63
    bar.set_params({"verbose": 1, "epochs": 2, "steps": 10})  # Keras knows better when it knows
    assert bar.target == 10


def test_strategy_is_described_in_words():
    import tensorflow as tf

    from imgclf.modeling.strategy import describe

    assert describe(tf.distribute.get_strategy()) in ("the CPU", "1 GPU")
