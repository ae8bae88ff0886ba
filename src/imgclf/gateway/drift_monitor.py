"""The gateway's periodic drift check: every ``IMGCLF_DRIFT_INTERVAL_SECONDS`` (0 turns it off),
each version of the served model with predictions in the last ``IMGCLF_DRIFT_LOOKBACK_HOURS`` is
compared with its reference profile over its newest ``IMGCLF_DRIFT_WINDOW`` predictions, and the
results become Prometheus gauges (``GatewayMetrics.record_drift``) that the shipped alert rules
and dashboard use. The same check as ``imgclf monitor drift``.

Under gunicorn every worker has a monitor; a lock file in the spool directory holding the time
of the last check lets one of them run each check and the others skip it (the gauges'
multiprocess mode keeps the most recent value).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import Engine

from imgclf.config import GatewaySettings
from imgclf.errors import MonitoringError
from imgclf.gateway.metrics import GatewayMetrics
from imgclf.monitoring.drift import DriftReport, DriftThresholds
from imgclf.monitoring.jobs import ProfileCache, drift_check, now_minus
from imgclf.storage.monitoring import versions_with_traffic

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, engine: Engine, settings: GatewaySettings, model_name: str, metrics: GatewayMetrics) -> None:
        self.engine = engine
        self.settings = settings
        self.model_name = model_name
        self.metrics = metrics
        self.profiles = ProfileCache(settings.registry)
        self._reported: dict[int, DriftReport] = {}  # version → its last report, whose gauges are set
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[DriftReport]:
        """Check every version with recent traffic; set the gauges; return the reports."""
        since = now_minus(timedelta(hours=self.settings.drift_lookback_hours))
        reports = []
        for version in sorted(versions_with_traffic(self.engine, self.model_name, since)):
            try:
                report, _, _ = drift_check(
                    self.engine,
                    self.profiles,
                    self.model_name,
                    version,
                    since,
                    self.settings.drift_window,
                    DriftThresholds.from_settings(self.settings),
                )
            except MonitoringError as error:
                log.warning("drift check of %s version %s skipped: %s", self.model_name, version, error)
                continue
            self.metrics.record_drift(report)
            if report.verdict == "drift":
                log.warning(
                    "drift in %s version %s: %s", self.model_name, version, ", ".join(t.name for t in report.drifted)
                )
            reports.append(report)
        checked = {report.model_version: report for report in reports}
        for version, old in self._reported.items():
            if version not in checked:
                self.metrics.forget_drift(old)
        self._reported = checked
        return reports

    def start(self) -> None:
        if self.settings.drift_interval_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="imgclf-drift-monitor", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def _turn(self) -> Iterator[bool]:
        """True when this process should check now: it holds the lock and no process checked recently."""
        path = self.settings.spool_dir / ".drift-check.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                handle.seek(0)
                try:
                    last = float(handle.read().strip() or 0)
                except ValueError:  # not written by us: check, then overwrite it
                    last = 0.0
                if time.time() - last < self.settings.drift_interval_seconds / 2:
                    yield False
                    return
                yield True
                handle.seek(0)
                handle.truncate()
                handle.write(f"{time.time():.3f}")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.drift_interval_seconds):
            try:
                with self._turn() as mine:
                    if mine:
                        self.run_once()
            except Exception:  # the database may be down; try again next time
                log.exception("drift check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
