"""Reading and writing the prediction log: inserts, filtered listing with cursors, reviews.

Listing uses keyset (cursor) pagination: the cursor is the sort key of the last row returned,
so pages stay correct while new predictions arrive.

Example:
    >>> page = list_predictions(engine, PredictionFilter(label="cats", min_confidence=0.9), limit=50)
    >>> page.next_cursor      # pass back as ``cursor`` for the next page (None on the last one)
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, and_, func, insert, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from imgclf.errors import InvalidCursorError, NotFoundError
from imgclf.storage.database import session_scope
from imgclf.storage.models import Prediction, utcnow

ReviewStatus = Literal["pending", "reviewed", "not_needed"]


def review_status(prediction: Prediction) -> ReviewStatus:
    if prediction.review_label is not None:
        return "reviewed"
    return "pending" if prediction.needs_review else "not_needed"


def as_utc(moment: datetime) -> datetime:
    """Aware UTC (naive values are taken as UTC); what both databases compare correctly."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class PredictionFilter:
    since: datetime | None = None
    until: datetime | None = None
    label: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    review_status: ReviewStatus | None = None
    review_reason: str | None = None  # why it was queued: uncertain, out_of_distribution, audit, manual
    api_key_id: str | None = None  # restricts to one key's predictions

    def conditions(self) -> list[Any]:
        p = Prediction
        conditions: list[Any] = []
        if self.since is not None:
            conditions.append(p.created_at >= as_utc(self.since))
        if self.until is not None:
            conditions.append(p.created_at < as_utc(self.until))
        for column, value in (
            (p.label, self.label),
            (p.model_name, self.model_name),
            (p.model_version, self.model_version),
            (p.api_key_id, self.api_key_id),
            (p.review_reason, self.review_reason),
        ):
            if value is not None:
                conditions.append(column == value)
        if self.min_confidence is not None:
            conditions.append(p.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conditions.append(p.confidence <= self.max_confidence)
        if self.review_status == "reviewed":
            conditions.append(p.review_label.is_not(None))
        elif self.review_status == "pending":
            conditions += [p.needs_review.is_(True), p.review_label.is_(None)]
        elif self.review_status == "not_needed":
            conditions += [p.needs_review.is_(False), p.review_label.is_(None)]
        return conditions


@dataclass(frozen=True)
class Page:
    items: list[Prediction]
    next_cursor: str | None


# ------------------------------------------------------------------ cursors


def _encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, columns: Sequence[InstrumentedAttribute]) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(columns):
            raise ValueError("wrong length")
        return [_cursor_value(column, value) for column, value in zip(columns, values, strict=True)]
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as error:
        raise InvalidCursorError(f"invalid cursor ({error}); use the next_cursor of a previous page") from None


def _cursor_value(column: InstrumentedAttribute, value: Any) -> Any:
    """A cursor value checked as strictly as the database would (PostgreSQL refuses NUL, non-finite
    floats compare oddly, a bool is no number), so a tampered cursor is a client error."""
    python_type = column.type.python_type
    if python_type is datetime:
        return as_utc(datetime.fromisoformat(value))  # OverflowError: no UTC equivalent
    if isinstance(value, bool) or not isinstance(value, python_type | (int if python_type is float else python_type)):
        raise ValueError(f"{column.key} is not {python_type.__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{column.key} is not a finite number")
    if isinstance(value, str) and ("\x00" in value or len(value) > 64):
        raise ValueError(f"{column.key} is not an id")
    return value


def _after(columns: Sequence[InstrumentedAttribute], values: Sequence[Any], descending: bool) -> Any:
    """Rows strictly after ``values`` in (columns...) order: a keyset condition."""
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == values[j] for j in range(i)]
        beyond = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def _page(
    engine: Engine,
    conditions: list[Any],
    order: Sequence[InstrumentedAttribute],
    descending: bool,
    limit: int,
    cursor: str | None,
) -> Page:
    if cursor:
        conditions = [*conditions, _after(order, _decode_cursor(cursor, order), descending)]
    ordering = [c.desc() if descending else c.asc() for c in order]
    query = select(Prediction).where(*conditions).order_by(*ordering).limit(limit + 1)
    with session_scope(engine) as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor([getattr(rows[-1], c.key) for c in order]) if more and rows else None
    return Page(rows, next_cursor)


# ------------------------------------------------------------------ queries


def insert_predictions(engine: Engine, rows: Iterable[dict[str, Any]], skip_existing: bool = True) -> int:
    """Insert prediction rows (dicts of column values) in one transaction; returns how many were new.

    With ``skip_existing`` rows whose id is already stored are skipped, which makes re-delivery
    safe: a spooled batch replayed twice is stored once. Fresh rows (new ids) can skip the check.
    """
    rows = list(rows)
    if not rows:
        return 0
    table = Prediction.__table__
    with engine.begin() as connection:
        if skip_existing:
            ids = [row["id"] for row in rows]
            present = set(connection.scalars(select(table.c.id).where(table.c.id.in_(ids))))
            rows = [row for row in rows if row["id"] not in present]
        if rows:
            # Core executemany: the ORM's bulk insert adds about half again per row on the hot path.
            connection.execute(insert(table), rows)
    return len(rows)


def get_prediction(engine: Engine, prediction_id: str, api_key_id: str | None = None) -> Prediction:
    with session_scope(engine) as session:
        prediction = session.get(Prediction, prediction_id)
    if prediction is None or (api_key_id is not None and prediction.api_key_id != api_key_id):
        raise NotFoundError(f"no prediction {prediction_id}")
    return prediction


def list_predictions(engine: Engine, filters: PredictionFilter, limit: int = 50, cursor: str | None = None) -> Page:
    """Newest first."""
    order = (Prediction.created_at, Prediction.id)
    return _page(engine, filters.conditions(), order, True, limit, cursor)


def review_queue(
    engine: Engine,
    status: Literal["pending", "reviewed"] = "pending",
    limit: int = 50,
    cursor: str | None = None,
    reason: str | None = None,
    exclude: Collection[str] = (),
    label: str | None = None,
) -> Page:
    """Pending: least confident first (where a person helps most). Reviewed: most recent first.
    ``reason`` keeps one kind of item (``audit``: the random sample, to review first), ``label`` one
    predicted class; ``exclude`` leaves out ids (the ones a reviewer skipped)."""
    conditions = PredictionFilter(review_status=status, review_reason=reason, label=label).conditions()
    if exclude:
        conditions.append(Prediction.id.not_in(list(exclude)))
    if status == "pending":
        return _page(engine, conditions, (Prediction.confidence, Prediction.id), False, limit, cursor)
    return _page(engine, conditions, (Prediction.reviewed_at, Prediction.id), True, limit, cursor)


@dataclass(frozen=True)
class ReviewState:
    """A prediction's review columns at one moment (what an undo puts back)."""

    label: str | None
    reviewer: str | None
    reviewed_at: datetime | None
    reason: str | None

    @classmethod
    def of(cls, prediction: Prediction) -> ReviewState:
        at = None if prediction.reviewed_at is None else as_utc(prediction.reviewed_at)
        return cls(prediction.review_label, prediction.reviewer, at, prediction.review_reason)


def record_review(engine: Engine, prediction_id: str, label: str, reviewer: str) -> Prediction:
    """Store a reviewer's label (a later review replaces an earlier one)."""
    return change_review(engine, prediction_id, label, reviewer)[0]


def change_review(engine: Engine, prediction_id: str, label: str, reviewer: str) -> tuple[Prediction, ReviewState]:
    """``record_review``, also returning the review state it replaced (for an undo)."""
    with session_scope(engine) as session:
        prediction = session.get(Prediction, prediction_id, with_for_update=True)
        if prediction is None:
            raise NotFoundError(f"no prediction {prediction_id}")
        previous = ReviewState.of(prediction)
        prediction.review_label = label
        prediction.reviewer = reviewer
        prediction.reviewed_at = utcnow()
        if prediction.review_reason is None:
            prediction.review_reason = "manual"  # reviewed without being queued
        return prediction, previous


def restore_review(engine: Engine, prediction_id: str, expected: ReviewState, previous: ReviewState) -> bool:
    """Undo a review: put ``previous`` back, only if the review is still ``expected`` (nobody changed it
    since). Returns whether it was restored."""
    with session_scope(engine) as session:
        prediction = session.get(Prediction, prediction_id, with_for_update=True)
        if prediction is None:
            raise NotFoundError(f"no prediction {prediction_id}")
        if ReviewState.of(prediction) != expected:
            return False
        prediction.review_label = previous.label
        prediction.reviewer = previous.reviewer
        prediction.reviewed_at = previous.reviewed_at
        prediction.review_reason = previous.reason
        return True


@dataclass(frozen=True)
class QueueCounts:
    """Pending review items by why they were queued and by predicted class."""

    by_reason: dict[str, int]
    by_label: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


def review_counts(engine: Engine) -> QueueCounts:
    conditions = PredictionFilter(review_status="pending").conditions()
    with engine.connect() as connection:
        counts = {}
        for column in (Prediction.review_reason, Prediction.label):
            query = select(column, func.count()).where(*conditions).group_by(column)
            counts[column.key] = {str(key): int(n) for key, n in connection.execute(query)}
    return QueueCounts(counts["review_reason"], dict(sorted(counts["label"].items())))


def image_format(engine: Engine, sha256: str, api_key_id: str | None = None) -> str | None:
    """The validated format of a logged image (by content hash), or None if no prediction has it
    (of this key, when ``api_key_id`` is given)."""
    query = select(Prediction.image_format).where(Prediction.image_sha256 == sha256)
    if api_key_id is not None:
        query = query.where(Prediction.api_key_id == api_key_id)
    with engine.connect() as connection:
        return connection.scalar(query.limit(1))


def reviewed_predictions(engine: Engine, since: datetime | None = None) -> list[Prediction]:
    """Every reviewed prediction, oldest review first."""
    filters = PredictionFilter(review_status="reviewed")
    conditions = filters.conditions()
    if since is not None:
        conditions.append(Prediction.reviewed_at >= as_utc(since))
    with session_scope(engine) as session:
        return list(session.scalars(select(Prediction).where(*conditions).order_by(Prediction.reviewed_at)))
