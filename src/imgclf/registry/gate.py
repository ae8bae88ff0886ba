"""The promotion gate: bless a candidate version only if it is good enough and no worse than stable.

Semantics follow TFX's Evaluator (TFMA ``MetricThreshold``), as implemented in
``metrics_validator.py``:

* a **value threshold** bounds the candidate's metric: ``lower_bound ≤ value ≤ upper_bound``;
* a **change threshold** compares it with the baseline (the version serving now, see
  ``Registry.serving_version``; evaluated on the same data in the same run):
  ``diff = candidate − baseline``, ``relative = diff / baseline``;
  ``higher_is_better`` passes when ``diff ≥ absolute`` and ``relative ≥ relative_bound`` (each
  only if set), ``lower_is_better`` when ``diff ≤ absolute`` and ``relative ≤ relative_bound``;
* every check must pass; a metric missing from the results fails its check;
* without a baseline (the candidate is the only version that can serve, or is the serving one)
  change thresholds are skipped and recorded as such: TFX's "rubber stamp".

The result goes to ``VERSION/assets.extra/gate_result.json`` with an empty ``BLESSED`` or
``NOT_BLESSED`` marker beside it; ``imgclf models promote`` refuses versions that are not blessed.

Example:
    >>> result = run_gate(Registry("registry"), "cats_dogs", 4, "data/golden")
    >>> result.blessed, [c.message for c in result.failed]
    (False, ['accuracy 0.52 < lower bound 0.8', ...])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.contract import GATE_RESULT_FILE as GATE_FILE
from imgclf.errors import RegistryError
from imgclf.registry.store import Registry

DIRECTIONS = ("higher_is_better", "lower_is_better")


@dataclass(frozen=True)
class MetricThreshold:
    metric: str
    lower_bound: float | None = None
    upper_bound: float | None = None
    direction: str | None = None  # for change thresholds: higher_is_better or lower_is_better
    absolute: float | None = None
    relative: float | None = None

    def __post_init__(self) -> None:
        if (self.absolute is not None or self.relative is not None) and self.direction not in DIRECTIONS:
            raise RegistryError(f"gate threshold for {self.metric}: a change threshold needs direction {DIRECTIONS}")


# Defaults: a floor on accuracy, and no regression against stable beyond one point of accuracy or
# macro F1, or two points of calibration error.
DEFAULT_THRESHOLDS = (
    MetricThreshold("accuracy", lower_bound=0.5, direction="higher_is_better", absolute=-0.01),
    MetricThreshold("macro_f1", direction="higher_is_better", absolute=-0.01),
    MetricThreshold("expected_calibration_error", upper_bound=0.2, direction="lower_is_better", absolute=0.02),
)


def load_thresholds(path: Path) -> tuple[MetricThreshold, ...]:
    """``{"thresholds": [{"metric": "accuracy", "lower_bound": 0.9, ...}, ...]}`` (JSON)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return tuple(MetricThreshold(**item) for item in data["thresholds"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RegistryError(f"cannot read gate config {path}: {error}") from None


@dataclass(frozen=True)
class GateCheck:
    metric: str
    kind: str  # value, change
    passed: bool
    message: str
    candidate: float | None = None
    baseline: float | None = None


@dataclass
class GateResult:
    model_name: str
    version: int
    baseline_version: int | None
    data: str
    blessed: bool
    checks: list[GateCheck] = field(default_factory=list)
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    baseline_metrics: dict[str, Any] | None = None
    gated_at: str = ""

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


def evaluate_version(version_dir: Path, data: str, only: list[str] | None = None) -> dict[str, Any]:
    """Metrics of an exported version on ``data`` (folder or CSV; its ``val`` split if split);
    ``only``: just the images of these classes."""
    from imgclf.data.prepare import usable_samples
    from imgclf.data.sources import load_dataset
    from imgclf.evaluation.metrics import classification_metrics
    from imgclf.export.inference import ExportedModel

    dataset = load_dataset(data)
    if dataset.has_splits:
        dataset = dataset.subset("val")
    if only is not None:
        dataset = type(dataset)(dataset.root, dataset.kind, [s for s in dataset.samples if s.label in only])
    model = ExportedModel.load(version_dir)
    unknown = sorted(set(dataset.classes) - set(model.labels))
    if unknown:
        raise RegistryError(f"evaluation data has classes the model does not know: {', '.join(unknown)}")
    samples, _, _ = usable_samples(dataset)
    predictions = model.classify_files([s.path for s in samples])
    scores = np.array([[p.scores[name] for name in model.labels] for p in predictions])
    y_true = np.array([model.labels.index(s.label) for s in samples])
    return classification_metrics(y_true, scores, model.labels)


def check_thresholds(
    thresholds: tuple[MetricThreshold, ...], candidate: dict[str, Any], baseline: dict[str, Any] | None
) -> list[GateCheck]:
    checks = []
    for t in thresholds:
        value = candidate.get(t.metric)
        if not isinstance(value, int | float):
            checks.append(GateCheck(t.metric, "value", False, f"{t.metric}: metric not found"))
            continue
        if t.lower_bound is not None or t.upper_bound is not None:
            low_ok = t.lower_bound is None or value >= t.lower_bound
            high_ok = t.upper_bound is None or value <= t.upper_bound
            if not low_ok:
                message = f"{t.metric} {value:.4g} < lower bound {t.lower_bound:g}"
            elif not high_ok:
                message = f"{t.metric} {value:.4g} > upper bound {t.upper_bound:g}"
            else:
                message = f"{t.metric} {value:.4g} within bounds"
            checks.append(GateCheck(t.metric, "value", low_ok and high_ok, message, value))
        if t.direction is None:
            continue
        if baseline is None:
            checks.append(GateCheck(t.metric, "change", True, f"{t.metric}: no baseline, change not checked", value))
            continue
        base = baseline.get(t.metric)
        if not isinstance(base, int | float):
            checks.append(GateCheck(t.metric, "change", False, f"{t.metric}: baseline metric not found", value))
            continue
        diff = value - base
        ratio = diff / base if base else 0.0
        sign = 1 if t.direction == "higher_is_better" else -1
        ok = (t.absolute is None or sign * diff >= sign * t.absolute) and (
            t.relative is None or sign * ratio >= sign * t.relative
        )
        bound = ", ".join(
            part
            for part in (
                f"absolute {t.absolute:+g}" if t.absolute is not None else "",
                f"relative {t.relative:+g}" if t.relative is not None else "",
            )
            if part
        )
        verdict = "within" if ok else "outside"
        message = f"{t.metric} {value:.4g} vs stable {base:.4g}: change {diff:+.4g} {verdict} {bound} ({t.direction})"
        checks.append(GateCheck(t.metric, "change", ok, message, value, base))
    return checks


def run_gate(
    registry: Registry,
    name: str,
    version: int,
    data: str,
    thresholds: tuple[MetricThreshold, ...] = DEFAULT_THRESHOLDS,
) -> GateResult:
    """Evaluate the candidate (and stable) on ``data``, check every threshold, store the result."""
    candidate_dir = registry.version_dir(name, version)
    baseline_version = _baseline(registry, name, version)
    candidate = evaluate_version(candidate_dir, data)
    baseline = None
    compared_on = None
    if baseline_version:
        baseline_dir = registry.version_dir(name, baseline_version)
        known = registry.card(name, baseline_version).get("classes") or []
        if set(candidate_classes := registry.card(name, version).get("classes") or []) - set(known):
            # A candidate with new classes: stable cannot be scored on their images, so the change checks
            # compare both on the images of the classes stable knows; value thresholds use every image.
            compared_on = sorted(set(known) & set(candidate_classes))
            baseline = evaluate_version(baseline_dir, data, only=compared_on)
            shared = evaluate_version(candidate_dir, data, only=compared_on)
        else:
            baseline = evaluate_version(baseline_dir, data)
    checks = check_thresholds(thresholds, candidate, baseline)
    if compared_on is not None:
        value_checks = [c for c in checks if c.kind == "value"]
        change_checks = [c for c in check_thresholds(thresholds, shared, baseline) if c.kind == "change"]
        checks = value_checks + [
            GateCheck(c.metric, c.kind, c.passed, f"{c.message} [classes stable knows: {', '.join(compared_on)}]",
                      c.candidate, c.baseline)  # fmt: skip
            for c in change_checks
        ]
    keep = ("accuracy", "macro_f1", "weighted_f1", "log_loss", "expected_calibration_error", "num_examples")
    result = GateResult(
        model_name=name,
        version=version,
        baseline_version=baseline_version,
        data=str(data),
        blessed=all(c.passed for c in checks),
        checks=checks,
        candidate_metrics={k: candidate[k] for k in keep if k in candidate},
        baseline_metrics={k: baseline[k] for k in keep if k in baseline} if baseline else None,
        gated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    extra = (candidate_dir / GATE_FILE).parent
    extra.mkdir(exist_ok=True)
    (candidate_dir / GATE_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    (extra / ("NOT_BLESSED" if result.blessed else "BLESSED")).unlink(missing_ok=True)
    (extra / ("BLESSED" if result.blessed else "NOT_BLESSED")).touch()
    return result


def _baseline(registry: Registry, name: str, version: int) -> int | None:
    """The version serving now; when that is the candidate itself and it is not stable (a registry with
    no stable label), the newest older version that can serve."""
    try:
        serving = registry.serving_version(name)
    except RegistryError:
        return None
    if serving != version:
        return serving
    if registry.state(name).stable == version:
        return None
    older = [v for v in registry.versions(name) if v < version and registry.check(name, v).complete]
    return older[-1] if older else None
