"""The baseline guard (issue 21): every pretrained run fits a linear probe on the frozen backbone's
features, reports it beside the fine-tuned model, and ``keep_best`` keeps the better of the two."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_csv

pytestmark = pytest.mark.slow


def test_a_worse_fine_tuned_model_is_flagged_and_keep_best_keeps_the_probe(
    cats_dogs_dir, mobilenet_v2_weights, tmp_path
):
    from imgclf.config import TrainConfig
    from imgclf.evaluation.evaluate import evaluate_run
    from imgclf.modeling.training import train

    rows = []
    for split, folder, count in (("train", "train", 24), ("val", "validation", 16)):
        for label in ("cats", "dogs"):
            rows += [[str(p), label, split] for p in sorted((cats_dogs_dir / folder / label).iterdir())[:count]]
    manifest = write_csv(tmp_path / "subset.csv", rows)
    lines: list[str] = []
    # A learning rate of 1e-7 for one epoch leaves the head at its random start: a model worse than the probe.
    config = TrainConfig(
        data=str(manifest), out=str(tmp_path / "run"), model="mobilenet_v2", alpha=0.35,
        weights=str(mobilenet_v2_weights), image_size=96, epochs=1, fine_tune_epochs=0,
        learning_rate=1e-7, batch_size=16, keep_best=True,
    )  # fmt: skip
    run = train(config, report=lines.append)

    baseline = json.loads((run.eval_dir / "baseline.json").read_text())
    assert baseline["images"] == 32
    assert baseline["better"] == baseline["kept"] == "linear_probe"
    assert baseline["linear_probe"]["accuracy"] >= 0.75 > baseline["fine_tuned"]["accuracy"]
    assert any(line.startswith("WARNING: the fine-tuned model is worse") for line in lines)
    assert (run.path / "weights" / "fine_tuned.keras").is_file()
    # The kept checkpoint is the probe with the regression folded into the scores layer: evaluating
    # the run now gives the probe's own validation accuracy.
    metrics = evaluate_run(run.path)
    assert metrics["accuracy"] == pytest.approx(baseline["linear_probe"]["accuracy"])
    saved = json.loads(run.config.read_text())
    assert saved["keep_best"] is True and "class_weights" in saved["chosen"]
