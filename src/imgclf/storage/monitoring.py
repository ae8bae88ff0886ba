"""What monitoring reads from the prediction log: windows of recent predictions per model version.

Rows come back as plain dicts (Core selects, no ORM objects), newest first, so a window of
10,000 predictions loads quickly.

Example:
    >>> rows = window_rows(engine, "cats_dogs", 3, limit=1000)
    >>> rows[0]["label"], len(rows[0]["embedding"])
    ('cats', 32)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from imgclf.storage.models import Prediction
from imgclf.storage.predictions import as_utc

WINDOW_COLUMNS = (
    Prediction.created_at,
    Prediction.label,
    Prediction.confidence,
    Prediction.needs_review,
    Prediction.review_label,
    Prediction.image_format,
    Prediction.input_stats,
    Prediction.embedding,
)
QUALITY_COLUMNS = (
    Prediction.created_at,
    Prediction.model_version,
    Prediction.label,
    Prediction.confidence,
    Prediction.needs_review,
    Prediction.review_label,
    Prediction.review_reason,
)


def window_rows(
    engine: Engine,
    model_name: str,
    model_version: int,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The newest predictions of one version (at most ``limit``, none older than ``since``)."""
    query = select(*WINDOW_COLUMNS).where(
        Prediction.model_name == model_name, Prediction.model_version == model_version
    )
    if since is not None:
        query = query.where(Prediction.created_at >= as_utc(since))
    query = query.order_by(Prediction.created_at.desc())
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def versions_with_traffic(engine: Engine, model_name: str, since: datetime | None = None) -> dict[int, int]:
    """``{version: predictions}`` for the versions of ``model_name`` that answered since ``since``."""
    query = select(Prediction.model_version, func.count()).where(Prediction.model_name == model_name)
    if since is not None:
        query = query.where(Prediction.created_at >= as_utc(since))
    query = query.group_by(Prediction.model_version)
    with engine.connect() as connection:
        return {int(version): int(count) for version, count in connection.execute(query)}


def quality_rows(engine: Engine, model_name: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every prediction of ``model_name`` since ``since``: the columns quality tracking needs."""
    query = select(*QUALITY_COLUMNS).where(Prediction.model_name == model_name)
    if since is not None:
        query = query.where(Prediction.created_at >= as_utc(since))
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(Prediction.created_at))]


def traffic_rows(engine: Engine, model_name: str, since: datetime) -> list[tuple[datetime, str, float]]:
    """``(created_at, request_id, latency_ms)`` of every answered prediction of ``model_name`` since
    ``since`` (shadow copies left out), oldest first: request rate and latency over time."""
    query = (
        select(Prediction.created_at, Prediction.request_id, Prediction.latency_ms)
        .where(Prediction.model_name == model_name, Prediction.created_at >= as_utc(since))
        .where(Prediction.role.is_(None) | (Prediction.role != "shadow"))
        .order_by(Prediction.created_at)
    )
    with engine.connect() as connection:
        return [(row[0], row[1], float(row[2])) for row in connection.execute(query)]
