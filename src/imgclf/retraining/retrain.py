"""``imgclf retrain``: reviewed data → a new version → the gate → a canary, never a worse stable.

1. plan (``imgclf.retraining.plan``): the stable version's data plus every reviewed image, and a
   fixed evaluation set (its validation split plus held-out audit items) that is never trained on;
2. train with the stable version's recorded configuration (warm start from its weights when the
   classes are unchanged), evaluate, export with the lineage in the model card;
3. gate the new version against stable on the fixed evaluation set;
4. blessed: promote it to canary at ``canary_share`` (``imgclf models judge`` decides the rest);
   not blessed: the version stays a candidate, stable is untouched, and the result names the checks
   that failed.

Example:
    >>> result = retrain(Registry("registry"), "cats_dogs", reviewed, work="retrain_runs")
    >>> result.outcome, result.version
    ('canary', 4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgclf.registry.gate import DEFAULT_THRESHOLDS, MetricThreshold, run_gate
from imgclf.registry.store import CANARY, Registry
from imgclf.retraining.plan import RetrainPlan, build_plan
from imgclf.retraining.reviewed import ReviewedImage
from imgclf.run_dir import write_json
from imgclf.storage.predictions import as_utc

Reporter = Callable[[str], object]


@dataclass
class RetrainResult:
    name: str
    outcome: str  # dry_run, skipped, canary, not_blessed
    plan: RetrainPlan | None = None
    version: int | None = None
    failed_checks: list[str] = field(default_factory=list)
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # candidate and baseline on the evaluation set


def new_reviews(reviewed: list[ReviewedImage], since: str | None) -> int:
    """Reviews made after ``since`` (an ISO time, e.g. the stable version's creation)."""
    if since is None:
        return len(reviewed)
    moment = as_utc(datetime.fromisoformat(since))
    return sum(1 for r in reviewed if r.reviewed_at is not None and as_utc(r.reviewed_at) > moment)


def retrain(
    registry: Registry,
    name: str,
    reviewed: list[ReviewedImage],
    *,
    work: str | Path,
    data: str | Path | None = None,
    min_new_reviews: int = 0,
    dry_run: bool = False,
    canary_share: float = 0.1,
    trigger: str = "manual",
    thresholds: tuple[MetricThreshold, ...] = DEFAULT_THRESHOLDS,
    report: Reporter = print,
) -> RetrainResult:
    """Retrain ``name`` from its stable version and ``reviewed``; see the module docstring."""
    state = registry.state(name)
    stable = state.stable
    plan = build_plan(registry, name, reviewed, data)
    for line in plan.lines():
        report(line)
    fresh = new_reviews(reviewed, registry.card(name, plan.parent_version).get("created_at"))
    if fresh < min_new_reviews:
        reason = f"{fresh} review(s) since version {stable} was exported, fewer than {min_new_reviews}"
        report(f"Not retraining: {reason}")
        return RetrainResult(name, "skipped", plan, reason=reason)
    if dry_run:
        report("Dry run: nothing trained")
        return RetrainResult(name, "dry_run", plan)

    from imgclf.config import TrainConfig
    from imgclf.evaluation.evaluate import evaluate_run
    from imgclf.modeling.training import train
    from imgclf.registry.publish import export_run

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = Path(work).expanduser().resolve() / name / stamp
    train_csv, evaluation_csv = plan.write(folder)
    parent = TrainConfig.load(plan.parent_run.config)
    warm = plan.classes == plan.parent_classes and plan.parent_run.best_checkpoint.is_file()
    config = parent.model_copy(
        update={
            "data": str(train_csv),
            "out": str(folder / "run"),
            "exclude": None,
            "init_from": str(plan.parent_run.best_checkpoint) if warm else None,
        }
    )
    report(f"Training {config.model} into {config.out}" + (" (warm start from stable)" if warm else ""))
    run = train(config, report=report)
    write_json(
        run.lineage,
        {
            "parent_version": plan.parent_version,
            "trigger": trigger,
            "training_manifest": str(train_csv),
            "training_manifest_sha256": hashlib.sha256(train_csv.read_bytes()).hexdigest(),
            "evaluation_manifest": str(evaluation_csv),
            "original_images": plan.counts["original_train"] + plan.counts["original_val"],
            "reviewed_images": plan.counts["reviewed_train"],
            "audit_images_for_evaluation": plan.counts["audit_eval"],
            "evaluation_images": len(plan.evaluation),
            "new_classes": plan.new_classes,
            "warm_start": warm,
        },
    )
    evaluate_run(run.path)
    version = int(export_run(run.path, registry.root, name).name)
    report(f"Exported {name} version {version}; gating it against stable version {stable} on the evaluation set")
    gate = run_gate(registry, name, version, str(evaluation_csv), thresholds)
    for check in gate.checks:
        report(f"  {'pass' if check.passed else 'FAIL'}: {check.message}")
    metrics = {"candidate": gate.candidate_metrics, "baseline": gate.baseline_metrics}
    if not gate.blessed:
        failed = [c.message for c in gate.failed]
        registry.record_decision(
            name,
            {"kind": "retrain", "version": version, "outcome": "not_blessed", "reasons": failed, "trigger": trigger},
        )
        report(f"{name} version {version} was not blessed: stable version {stable} keeps serving")
        return RetrainResult(name, "not_blessed", plan, version, failed, "the gate refused it", metrics)
    registry.promote(name, version, to=CANARY, canary_share=canary_share)
    registry.record_decision(
        name, {"kind": "retrain", "version": version, "outcome": "canary", "share": canary_share, "trigger": trigger}
    )
    report(
        f"{name} version {version} is the canary at {canary_share:.0%} of traffic. Next:\n"
        f"  imgclf models judge {name} --watch"
    )
    return RetrainResult(name, "canary", plan, version, metrics=metrics)
