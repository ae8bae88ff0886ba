"""The promotion gate with real exports: it refuses a model trained on shuffled labels, says
why, and blesses a better one; promote follows the blessing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgclf.config import AugmentationConfig
from imgclf.errors import RegistryError
from imgclf.registry.gate import MetricThreshold, check_thresholds, run_gate
from imgclf.registry.store import Registry
from tests.conftest import tiny_config, write_csv
from tests.helpers import _one_error_line, run_cli


def test_change_thresholds_follow_tfma_semantics():
    higher = (MetricThreshold("accuracy", direction="higher_is_better", absolute=-0.01, relative=-0.02),)
    [ok] = check_thresholds(higher, {"accuracy": 0.895}, {"accuracy": 0.90})
    [worse] = check_thresholds(higher, {"accuracy": 0.88}, {"accuracy": 0.90})
    assert ok.passed and not worse.passed and "outside" in worse.message
    lower = (MetricThreshold("log_loss", direction="lower_is_better", absolute=0.05),)
    assert check_thresholds(lower, {"log_loss": 0.30}, {"log_loss": 0.27})[0].passed
    assert not check_thresholds(lower, {"log_loss": 0.40}, {"log_loss": 0.27})[0].passed
    [missing] = check_thresholds((MetricThreshold("roc_auc", lower_bound=0.9),), {}, None)
    assert not missing.passed and "not found" in missing.message
    [stamp] = check_thresholds(higher, {"accuracy": 0.2}, None)  # no baseline: rubber stamp
    assert stamp.passed and "no baseline" in stamp.message
    with pytest.raises(RegistryError, match="needs direction"):
        MetricThreshold("accuracy", absolute=0.1)


@pytest.mark.slow
def test_gate_refuses_shuffled_labels_and_blesses_a_better_model(shapes_dir, tmp_path, capsys):
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run

    files = sorted(p for p in shapes_dir.rglob("*") if p.is_file())
    rows = [[str(p), p.parent.name, "val" if i % 4 == 0 else "train"] for i, p in enumerate(files)]
    evaluation = write_csv(tmp_path / "eval.csv", [r for r in rows if r[2] == "val"])
    shuffled_labels = np.random.default_rng(0).permutation([r[1] for r in rows])
    shuffled = [[r[0], label, r[2]] for r, label in zip(rows, shuffled_labels, strict=True)]
    runs = {}
    # "better" trains without augmentation: on these few synthetic shapes the random transforms slow
    # learning enough that the learning-rate schedule can stall it near the 4-epoch model.
    for name, manifest_rows, epochs, augment in (
        ("weak", rows, 4, True),
        ("shuffled", shuffled, 6, True),
        ("better", rows, 30, False),
    ):
        manifest = write_csv(tmp_path / f"{name}.csv", manifest_rows)
        config = tiny_config(
            manifest,
            tmp_path / name,
            epochs=epochs,
            image_size=48,
            early_stopping_patience=30,
            augmentation=AugmentationConfig(enabled=augment),
        )
        runs[name] = train(config, report=lambda _: None)
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry")
    for name in ("weak", "shuffled", "better"):  # versions 1, 2, 3
        export_run(runs[name].path, registry.root, "shapes")

    # Accuracy and macro F1 only: calibration of these tiny models is noise.
    gate = (
        MetricThreshold("accuracy", lower_bound=0.5, direction="higher_is_better", absolute=-0.01),
        MetricThreshold("macro_f1", direction="higher_is_better", absolute=-0.01),
    )
    config = tmp_path / "gate.json"
    config.write_text(json.dumps({"thresholds": [t.__dict__ for t in gate]}))
    first = run_gate(registry, "shapes", 1, str(evaluation), gate)
    assert first.blessed, [c.message for c in first.failed]  # no baseline: value thresholds only
    registry.promote("shapes", 1)

    worse = run_gate(registry, "shapes", 2, str(evaluation), gate)
    assert not worse.blessed and worse.baseline_version == 1
    failed = {(c.metric, c.kind) for c in worse.failed}
    assert ("accuracy", "change") in failed, [c.message for c in worse.checks]
    assert (registry.version_dir("shapes", 2) / "assets.extra" / "NOT_BLESSED").is_file()
    with pytest.raises(RegistryError, match="was refused by the gate"):
        registry.promote("shapes", 2, to="canary")

    better = run_gate(registry, "shapes", 3, str(evaluation), gate)
    assert better.blessed, [c.message for c in better.failed]
    assert better.candidate_metrics["accuracy"] >= better.baseline_metrics["accuracy"]
    registry.promote("shapes", 3)
    stored = json.loads((registry.version_dir("shapes", 3) / "assets.extra" / "gate_result.json").read_text())
    assert stored["blessed"] and stored["baseline_version"] == 1

    # The CLI names every failed check and exits 3.
    command = ["models", "gate", "shapes", "2", "--data", evaluation, "--config", config, "--registry", registry.root]
    code, out, _ = run_cli(command, capsys)
    assert code == 3 and "NOT BLESSED" in out and "FAIL  accuracy" in out
    unknown = ["models", "gate", "shapes", "9", "--data", evaluation, "--registry", registry.root]
    _one_error_line(*run_cli(unknown, capsys)[::2], "no version 9")
