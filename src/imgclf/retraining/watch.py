"""When to retrain: enough new reviews, drift, or a schedule; one run at a time, not too often.

``imgclf retrain --watch`` checks every ``check_every`` seconds (or once, from cron, without
``--watch``) and retrains when any trigger holds and the last run is at least ``min_interval``
ago. A lock file beside the model's registry state keeps two watchers (or a watcher and a cron
job) from retraining the same model at once. Every decision is one log line.

Example:
    >>> triggers = Triggers(min_new_reviews=200, drift=True, every_seconds=7 * 86400)
    >>> due(triggers, new_reviews=250, drifted=False, last_run=None, now=now)
    'reviews: 250 new (>= 200)'
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imgclf.errors import RegistryError


@dataclass(frozen=True)
class Triggers:
    min_new_reviews: int | None = None  # retrain once this many reviews arrived since stable was exported
    drift: bool = False  # retrain when the drift monitor reports drift on stable
    every_seconds: float | None = None  # retrain on a schedule
    min_interval_seconds: float = 3600.0  # never two runs closer than this


def due(triggers: Triggers, new_reviews: int, drifted: bool, last_run: datetime | None, now: datetime) -> str | None:
    """Why a retraining run is due now, or None."""
    if last_run is not None and (now - last_run).total_seconds() < triggers.min_interval_seconds:
        return None
    if triggers.min_new_reviews is not None and new_reviews >= triggers.min_new_reviews:
        return f"reviews: {new_reviews} new (>= {triggers.min_new_reviews})"
    if triggers.drift and drifted:
        return "drift: the drift monitor reports drift on the stable version"
    if triggers.every_seconds is not None and (
        last_run is None or (now - last_run).total_seconds() >= triggers.every_seconds
    ):
        return f"schedule: every {triggers.every_seconds:g} s"
    return None


@contextlib.contextmanager
def retrain_lock(model_dir: Path) -> Iterator[None]:
    """Hold the model's retraining lock, or raise RegistryError at once if another run holds it."""
    path = model_dir / ".retrain.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegistryError(f"another imgclf retrain is running for {model_dir.name} ({path})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
