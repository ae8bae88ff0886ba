"""Monitoring jobs over the prediction log: a drift check for one version, quality over time.

Plain functions shared by ``imgclf monitor`` and the gateway's periodic check.

Example:
    >>> report, profile, window = drift_check(engine, Path("registry"), "cats_dogs", window_size=1000)
    >>> report.verdict
    'no_drift'
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from imgclf.errors import MonitoringError
from imgclf.monitoring.drift import DriftReport, DriftThresholds, detect_drift
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.quality import QualitySummary, summarize_quality
from imgclf.monitoring.window import Window
from imgclf.storage.monitoring import quality_rows, versions_with_traffic, window_rows

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` (or seconds with ``s``) → timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise MonitoringError(f"cannot read duration {text!r}; use a number and a unit: 30m, 24h, 7d, 2w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class ProfileCache:
    """Reference profiles from the registry, read once per version (they never change)."""

    def __init__(self, registry: Path) -> None:
        self.registry = Path(registry)
        self._profiles: dict[tuple[str, int], ReferenceProfile] = {}
        self._lock = threading.Lock()

    def get(self, model_name: str, version: int) -> ReferenceProfile:
        key = (model_name, version)
        with self._lock:
            if key not in self._profiles:
                version_dir = self.registry / model_name / str(version)
                if not version_dir.is_dir():
                    raise MonitoringError(f"{model_name} version {version} is not in the registry {self.registry}")
                self._profiles[key] = ReferenceProfile.load(version_dir)
            return self._profiles[key]


def drift_check(
    engine: Engine,
    profiles: ProfileCache,
    model_name: str,
    version: int | None = None,
    since: datetime | None = None,
    window_size: int | None = None,
    thresholds: DriftThresholds | None = None,
) -> tuple[DriftReport, ReferenceProfile, Window]:
    """Compare the newest predictions of ``version`` (default: the newest version with traffic)."""
    if version is None:
        traffic = versions_with_traffic(engine, model_name, since)
        if not traffic:
            raise MonitoringError(f"no predictions of {model_name} in the window to check")
        version = max(traffic)
    profile = profiles.get(model_name, version)
    rows = window_rows(engine, model_name, version, since=since, limit=window_size)
    window = Window.from_records(rows, profile.window.classes)
    return detect_drift(profile, window, thresholds, model_name, version), profile, window


@dataclass(frozen=True)
class QualityPoint:
    model_version: int
    bucket_start: str
    quality: QualitySummary

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "bucket_start": self.bucket_start, **asdict(self.quality)}


def quality_over_time(
    engine: Engine, profiles: ProfileCache, model_name: str, since: datetime | None, bucket: timedelta
) -> list[QualityPoint]:
    """Quality per version and time bucket (needs-review rate, confidence, estimated and realized accuracy)."""
    rows = quality_rows(engine, model_name, since)
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    step = bucket.total_seconds()
    for row in rows:
        created = row["created_at"]
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        groups.setdefault((row["model_version"], int(created.timestamp() // step)), []).append(row)
    points = []
    for (version, slot), members in sorted(groups.items()):
        try:
            profile: ReferenceProfile | None = profiles.get(model_name, version)
        except MonitoringError:
            profile = None  # an old export without a profile: no estimate, the rest still counts
        classes = profile.window.classes if profile else sorted({r["label"] for r in members})
        window = Window.from_records(members, classes)
        start = datetime.fromtimestamp(slot * step, UTC).isoformat(timespec="minutes")
        points.append(QualityPoint(version, start, summarize_quality(window, profile)))
    return points


def now_minus(duration: timedelta) -> datetime:
    return datetime.now(UTC) - duration
