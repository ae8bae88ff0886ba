"""Issue 20: what a retraining run trains and evaluates on, and when it is due (no training here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from imgclf.config import TrainConfig
from imgclf.contract import MODEL_CARD_FILE
from imgclf.data.sources import Sample, load_dataset, write_manifest
from imgclf.errors import RegistryError
from imgclf.registry.store import Registry
from imgclf.retraining.plan import audit_holdout, build_plan
from imgclf.retraining.reviewed import ReviewedImage
from imgclf.retraining.watch import Triggers, due, retrain_lock
from imgclf.run_dir import RunDir
from tests.conftest import encode, random_pixels


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(random_pixels(40, 40, seed=seed), "PNG"))
    return path


def _registry_with_stable(tmp_path):
    """A registry whose stable version 1 came from a run that trained on 2 × 6 images, validated on 2 × 2."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    samples = [Sample(_image(tmp_path / "orig" / f"{c}{i}.png", seed), c, "train" if i < 6 else "val")
               for c, base in (("cats", 0), ("dogs", 100)) for i, seed in enumerate(range(base, base + 8))]  # fmt: skip
    write_manifest(samples, run.manifest, absolute=True)
    run.labels.write_text("cats\ndogs\n")
    TrainConfig(data=str(tmp_path / "orig"), out=str(run.path), model="small_cnn").save(run.config)
    version = tmp_path / "registry" / "cd" / "1"
    (version / MODEL_CARD_FILE).parent.mkdir(parents=True)
    (version / MODEL_CARD_FILE).write_text(json.dumps({"run_dir": str(run.path), "classes": ["cats", "dogs"],
                                                       "created_at": "2026-01-01T00:00:00+00:00"}))  # fmt: skip
    (tmp_path / "registry" / "cd" / "registry.json").write_text(json.dumps({"labels": {"stable": 1}}))
    return Registry(tmp_path / "registry"), samples


def _reviewed(path, label, reason, sha=None):
    from hashlib import sha256

    return ReviewedImage(path, label, sha or sha256(path.read_bytes()).hexdigest(), reason, datetime.now(UTC))


def test_audit_items_are_split_half_and_half_by_content_the_same_every_time():
    digests = [f"{i:064x}" for i in range(2000)]
    held = [d for d in digests if audit_holdout(d)]
    assert 900 < len(held) < 1100
    assert held == [d for d in digests if audit_holdout(d)]


def test_plan_keeps_evaluation_images_out_of_training_and_lets_reviews_relabel(tmp_path):
    registry, originals = _registry_with_stable(tmp_path)
    reviews = [
        _reviewed(originals[0].path, "dogs", "uncertain"),  # a reviewer corrects an original training label
        _reviewed(_image(tmp_path / "store" / "val_copy.png", 6), "cats", "uncertain"),  # a copy of a val image
        _reviewed(_image(tmp_path / "store" / "new.png", 500), "foxes", "uncertain"),  # a new class
    ]
    audits = [_reviewed(_image(tmp_path / "store" / f"a{i}.png", 600 + i), "cats", "audit") for i in range(12)]
    plan = build_plan(registry, "cd", reviews + audits)
    held = [a for a in audits if audit_holdout(a.sha256)]
    assert 0 < len(held) < len(audits)
    evaluation = {s.path.name for s in plan.evaluation}
    assert evaluation == {"cats6.png", "cats7.png", "dogs6.png", "dogs7.png"} | {a.path.name for a in held}
    training = {s.path.name: s for s in plan.train if s.split == "train"}
    assert not evaluation & set(training)  # the validation split (early stopping) is the parent's, no gradient
    assert "val_copy.png" not in training and plan.counts["left_out_as_evaluation"] == 1
    assert "cats0.png" in training and training["cats0.png"].label == "dogs" and plan.counts["relabelled"] == 1
    assert {a.path.name for a in audits if not audit_holdout(a.sha256)} <= set(training)
    assert [s.split for s in plan.train].count("val") == 4  # the parent's validation split, for early stopping
    assert plan.new_classes == ["foxes"] and plan.parent_version == 1
    train_csv, evaluation_csv = plan.write(tmp_path / "work")
    assert len(load_dataset(evaluation_csv).samples) == len(plan.evaluation)
    assert not load_dataset(evaluation_csv).has_splits
    assert any("left out: copies of evaluation images" in line for line in plan.lines())


def test_plan_needs_the_stable_versions_run(tmp_path):
    registry, _ = _registry_with_stable(tmp_path)
    (tmp_path / "run" / "config.json").unlink()
    with pytest.raises(RegistryError, match="no longer there"):
        build_plan(registry, "cd", [])


def test_triggers_and_minimum_interval():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    triggers = Triggers(min_new_reviews=100, drift=True, every_seconds=86400, min_interval_seconds=3600)
    assert due(triggers, 150, False, None, now).startswith("reviews")
    assert due(triggers, 10, True, now - timedelta(hours=2), now).startswith("drift")
    assert due(triggers, 10, False, now - timedelta(days=2), now).startswith("schedule")
    assert due(triggers, 10, False, now - timedelta(hours=2), now) is None
    assert due(triggers, 500, True, now - timedelta(minutes=10), now) is None  # too soon after the last run


def test_one_retraining_run_per_model_at_a_time(tmp_path):
    with (
        retrain_lock(tmp_path),
        pytest.raises(RegistryError, match="another imgclf retrain is running"),
        retrain_lock(tmp_path),
    ):
        pass
    with retrain_lock(tmp_path):  # released
        pass
