"""``GET /v1/predictions`` and ``GET /v1/predictions/{id}``: the prediction log.

Keys with the ``review`` (or ``admin``) scope see every prediction; ``predict``-only keys see
their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator

from imgclf.gateway.api_keys import KeyInfo
from imgclf.gateway.dependencies import get_gateway, require_scope
from imgclf.gateway.runtime import Gateway
from imgclf.gateway.schemas import DATABASE_DOWN, PLAIN_TEXT, PredictionPage, PredictionRecord, error_responses
from imgclf.storage.predictions import PredictionFilter, ReviewStatus, as_utc, get_prediction, list_predictions

router = APIRouter(prefix="/v1", tags=["predictions"])

PredictionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PageSize = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[
    str | None, Query(max_length=500, pattern=r"^[A-Za-z0-9_=-]*$", description="next_cursor from the previous page.")
]
INT4_MAX = 2**31 - 1  # the prediction log's model_version column


def _in_utc(moment: datetime | None) -> datetime | None:
    """Refuse a time that has no UTC equivalent (e.g. 9999-12-31T23:59:59-14:00)."""
    if moment is not None:
        try:
            as_utc(moment)
        except OverflowError:
            raise ValueError("the time is outside the range that can be expressed in UTC") from None
    return moment


Moment = Annotated[datetime | None, AfterValidator(_in_utc)]


def _owner(key: KeyInfo) -> str | None:
    return None if key.allows("review") else key.id


@router.get(
    "/predictions/{prediction_id}",
    response_model=PredictionRecord,
    responses=error_responses(
        {
            403: "The key lacks the predict or review scope.",
            404: "No such prediction (of this key).",
            503: DATABASE_DOWN,
        }
    ),
)
def get_one(
    prediction_id: PredictionId,
    key: Annotated[KeyInfo, Depends(require_scope("predict", "review"))],
    gateway: Annotated[Gateway, Depends(get_gateway)],
) -> PredictionRecord:
    """One prediction with its review, if any."""
    gateway.require_database()
    return PredictionRecord.of(get_prediction(gateway.engine, prediction_id, _owner(key)))


@router.get(
    "/predictions",
    response_model=PredictionPage,
    responses=error_responses({403: "The key lacks the predict or review scope.", 503: DATABASE_DOWN}),
)
def list_all(
    key: Annotated[KeyInfo, Depends(require_scope("predict", "review"))],
    gateway: Annotated[Gateway, Depends(get_gateway)],
    since: Annotated[Moment, Query(description="Created at or after (ISO 8601; UTC if no offset).")] = None,
    until: Annotated[Moment, Query(description="Created before.")] = None,
    label: Annotated[str | None, Query(max_length=200, pattern=PLAIN_TEXT)] = None,
    model_version: Annotated[int | None, Query(ge=1, le=INT4_MAX)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    review_status: ReviewStatus | None = None,
    limit: PageSize = 50,
    cursor: Cursor = None,
) -> PredictionPage:
    """Predictions, newest first, filtered; follow `next_cursor` for more."""
    gateway.require_database()
    filters = PredictionFilter(
        since=since,
        until=until,
        label=label,
        model_version=model_version,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        review_status=review_status,
        api_key_id=_owner(key),
    )
    page = list_predictions(gateway.engine, filters, limit, cursor)
    return PredictionPage(items=[PredictionRecord.of(p) for p in page.items], next_cursor=page.next_cursor)
