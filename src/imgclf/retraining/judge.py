"""``imgclf models judge``: the canary against stable on live traffic, then promote or roll back.

Both arms are measured on the predictions they answered since the canary started (the
prediction log: latency, needs-review rate, confidence, audited accuracy) and on the gateway's
Prometheus counters (``/metrics``: failed predictions and the canary's agreement with stable).
Every check compares the canary with stable:

* error rate: at most stable's + ``max_error_rate_increase``;
* p99 latency: at most stable's × ``max_p99_ratio`` (+ 5 ms of slack for tiny latencies);
* agreement with stable: at least ``min_agreement``; by default what the gate's accuracies imply
  (two classifiers right with probabilities a and b agree on at least a + b − 1 of the images)
  less 0.1, so a canary that is better than a weak stable may disagree with it, but one that
  behaves unlike its evaluation does not pass (canary comparisons must be on);
* needs-review rate: at most stable's + ``max_needs_review_increase``;
* mean confidence: at least stable's − ``max_confidence_drop``;
* audited accuracy (audit reviews only, unbiased): when both arms have ``min_audits``, the canary
  fails if its 95 % Wilson interval lies wholly below stable's.

A check without enough data waits. With at least ``min_predictions`` canary predictions, any failed
check rolls the canary back and every check passing promotes it to stable; otherwise the verdict
is to wait. Each decision is recorded in the registry (``models show``).

Example:
    >>> verdict = judge(Registry("registry"), "cats_dogs", engine, metrics_text)
    >>> verdict.outcome, [c.message for c in verdict.checks]
    ('wait', ['canary 120 of 200 predictions needed', ...])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from imgclf.contract import GATE_RESULT_FILE
from imgclf.monitoring.intervals import wilson_interval
from imgclf.registry.store import STABLE, Registry
from imgclf.storage.database import session_scope
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import as_utc


@dataclass(frozen=True)
class JudgePolicy:
    min_predictions: int = 200
    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    min_agreement: float | None = None  # None: from the gate's accuracies (see the module docstring)
    min_comparisons: int = 50
    max_needs_review_increase: float = 0.1
    max_confidence_drop: float = 0.05
    min_audits: int = 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, wait
    message: str


@dataclass
class Arm:
    version: int
    predictions: int = 0
    p99_ms: float | None = None
    needs_review_rate: float | None = None
    mean_confidence: float | None = None
    audits: int = 0
    audit_correct: int = 0
    errors: float = 0.0  # from /metrics
    answered: float = 0.0  # from /metrics
    agree: float = 0.0
    disagree: float = 0.0

    @property
    def error_rate(self) -> float | None:
        total = self.errors + self.answered
        return self.errors / total if total else None

    @property
    def audited_accuracy(self) -> tuple[float, tuple[float, float]] | None:
        interval = wilson_interval(self.audit_correct, self.audits)
        return None if interval is None else (self.audit_correct / self.audits, interval)


@dataclass
class Verdict:
    name: str
    outcome: str  # promote, rollback, wait, no_canary
    canary: Arm | None = None
    stable: Arm | None = None
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "canary": None if self.canary is None else self.canary.version,
            "stable": None if self.stable is None else self.stable.version,
            "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in self.checks],
        }


def _measure(engine: Engine, name: str, arm: Arm, since: datetime) -> None:
    query = select(
        Prediction.latency_ms, Prediction.needs_review, Prediction.confidence, Prediction.label,
        Prediction.review_label, Prediction.review_reason,
    ).where(
        Prediction.model_name == name, Prediction.model_version == arm.version, Prediction.created_at >= since,
        Prediction.role.in_((STABLE, "canary")),
    )  # fmt: skip
    with session_scope(engine) as session:
        rows = session.execute(query).all()
    arm.predictions = len(rows)
    if rows:
        arm.p99_ms = float(np.percentile([r.latency_ms for r in rows], 99))
        arm.needs_review_rate = float(np.mean([bool(r.needs_review) for r in rows]))
        arm.mean_confidence = float(np.mean([r.confidence for r in rows]))
    audits = [r for r in rows if r.review_reason == "audit" and r.review_label is not None]
    arm.audits = len(audits)
    arm.audit_correct = sum(1 for r in audits if r.review_label == r.label)


def read_counters(metrics_text: str, name: str, arms: list[Arm]) -> None:
    """Failed and answered predictions and canary agreement per version, from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    by_version = {str(arm.version): arm for arm in arms}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            arm = by_version.get(labels.get("version", ""))
            if arm is None or labels.get("model") != name or not sample.name.endswith("_total"):
                continue
            if sample.name == "imgclf_gateway_routed_predictions_total":
                arm.answered += sample.value
            elif sample.name == "imgclf_gateway_backend_errors_total":
                arm.errors += sample.value
            elif sample.name == "imgclf_gateway_agreement_total" and labels.get("role") == "canary":
                if labels.get("agree") == "yes":
                    arm.agree += sample.value
                else:
                    arm.disagree += sample.value


def judge(
    registry: Registry, name: str, engine: Engine, metrics_text: str | None, policy: JudgePolicy = JudgePolicy()
) -> Verdict:
    """Measure the canary against stable and decide; does not change the registry (see ``apply``)."""
    state = registry.state(name)
    if state.canary is None or state.stable is None:
        return Verdict(name, "no_canary")
    since = as_utc(datetime.fromisoformat(state.canary_since)) if state.canary_since else datetime.fromtimestamp(0, UTC)
    canary, stable = Arm(state.canary), Arm(state.stable)
    for arm in (canary, stable):
        _measure(engine, name, arm, since)
    if metrics_text is not None:
        read_counters(metrics_text, name, [canary, stable])
    if policy.min_agreement is None:
        policy = replace(policy, min_agreement=expected_agreement(registry, name, canary.version))
    checks = _checks(canary, stable, policy, metrics_text is not None)
    enough = canary.predictions >= policy.min_predictions
    if any(c.status == "fail" for c in checks) and enough:
        outcome = "rollback"
    elif enough and all(c.status == "pass" for c in checks):
        outcome = "promote"
    else:
        outcome = "wait"
    return Verdict(name, outcome, canary, stable, checks)


def expected_agreement(registry: Registry, name: str, version: int, slack: float = 0.1) -> float:
    """The least agreement with stable the gate's accuracies allow (a + b − 1), less ``slack``; 0.5
    without a gate result."""
    try:
        result = json.loads((registry.version_dir(name, version) / GATE_RESULT_FILE).read_text(encoding="utf-8"))
        a = float(result["candidate_metrics"]["accuracy"])
        b = float(result["baseline_metrics"]["accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.5
    return max(0.0, a + b - 1 - slack)


def _checks(canary: Arm, stable: Arm, p: JudgePolicy, counted: bool) -> list[Check]:
    checks = [
        Check(
            "traffic",
            "pass" if canary.predictions >= p.min_predictions else "wait",
            f"canary {canary.predictions} of {p.min_predictions} predictions needed (stable {stable.predictions})",
        )
    ]
    if not counted:
        checks.append(Check("error_rate", "wait", "no gateway /metrics to read errors and agreement from"))
    else:
        c, s = canary.error_rate, stable.error_rate
        if c is None or s is None:
            checks.append(Check("error_rate", "wait", "no predictions counted by the gateway yet"))
        else:
            ok = c <= s + p.max_error_rate_increase
            checks.append(Check("error_rate", "pass" if ok else "fail", f"error rate {c:.4f} vs stable {s:.4f}"))
        compared = canary.agree + canary.disagree
        if compared < p.min_comparisons:
            checks.append(Check("agreement", "wait", f"{compared:.0f} of {p.min_comparisons} comparisons with stable"))
        else:
            rate = canary.agree / compared
            ok = rate >= p.min_agreement
            checks.append(
                Check(
                    "agreement", "pass" if ok else "fail", f"agrees with stable on {rate:.3f} (min {p.min_agreement})"
                )
            )
    if canary.p99_ms is None or stable.p99_ms is None:
        checks.append(Check("p99_latency", "wait", "no latencies yet"))
    else:
        ok = canary.p99_ms <= stable.p99_ms * p.max_p99_ratio + 5
        checks.append(
            Check(
                "p99_latency", "pass" if ok else "fail", f"p99 {canary.p99_ms:.1f} ms vs stable {stable.p99_ms:.1f} ms"
            )
        )
    if canary.needs_review_rate is not None and stable.needs_review_rate is not None:
        ok = canary.needs_review_rate <= stable.needs_review_rate + p.max_needs_review_increase
        checks.append(
            Check(
                "needs_review",
                "pass" if ok else "fail",
                f"needs review {canary.needs_review_rate:.3f} vs stable {stable.needs_review_rate:.3f}",
            )
        )
        ok = (canary.mean_confidence or 0) >= (stable.mean_confidence or 0) - p.max_confidence_drop
        checks.append(
            Check(
                "confidence",
                "pass" if ok else "fail",
                f"mean confidence {canary.mean_confidence:.3f} vs stable {stable.mean_confidence:.3f}",
            )
        )
    ca, sa = canary.audited_accuracy, stable.audited_accuracy
    if ca is None or sa is None or canary.audits < p.min_audits or stable.audits < p.min_audits:
        checks.append(
            Check(
                "audited_accuracy",
                "pass",
                f"not judged: {canary.audits} canary and {stable.audits} stable audit reviews "
                f"(needs {p.min_audits} each)",
            )
        )
    else:
        worse = ca[1][1] < sa[1][0]
        checks.append(
            Check(
                "audited_accuracy",
                "fail" if worse else "pass",
                f"audited accuracy {ca[0]:.3f} [{ca[1][0]:.3f}, {ca[1][1]:.3f}] vs stable {sa[0]:.3f} "
                f"[{sa[1][0]:.3f}, {sa[1][1]:.3f}]",
            )
        )
    return checks


def apply(registry: Registry, verdict: Verdict) -> None:
    """Act on a verdict: promote the canary to stable, or end it; record the decision either way."""
    if verdict.outcome not in ("promote", "rollback") or verdict.canary is None:
        return
    if verdict.outcome == "promote":
        registry.promote(verdict.name, verdict.canary.version, to=STABLE)
    else:
        registry.rollback(verdict.name)
    failed = [c.message for c in verdict.checks if c.status == "fail"]
    registry.record_decision(
        verdict.name,
        {"kind": "judge", "version": verdict.canary.version, "outcome": verdict.outcome, "reasons": failed or
         [c.message for c in verdict.checks]},
    )  # fmt: skip
