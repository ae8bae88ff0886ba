"""The review queue: ``GET /v1/reviews`` (least confident first) and ``POST /v1/reviews/{id}``.

The review's JSON body is taken as JSON whatever Content-Type it declares (``curl -d`` declares a
form): ``imgclf.gateway.json_body``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from imgclf.gateway.api_keys import KeyInfo
from imgclf.gateway.dependencies import get_gateway, require_scope
from imgclf.gateway.json_body import AnyContentTypeJsonRoute
from imgclf.gateway.reviewing import submit_review
from imgclf.gateway.routes.predictions import Cursor, PageSize, PredictionId
from imgclf.gateway.runtime import Gateway
from imgclf.gateway.schemas import (
    DATABASE_DOWN,
    PredictionPage,
    PredictionRecord,
    ReviewReason,
    ReviewRequest,
    error_responses,
)
from imgclf.storage.predictions import review_queue

router = APIRouter(prefix="/v1", tags=["reviews"], route_class=AnyContentTypeJsonRoute)


@router.get(
    "/reviews",
    response_model=PredictionPage,
    responses=error_responses({403: "The key lacks the review scope.", 503: DATABASE_DOWN}),
)
def queue(
    key: Annotated[KeyInfo, Depends(require_scope("review"))],
    gateway: Annotated[Gateway, Depends(get_gateway)],
    status: Literal["pending", "reviewed"] = "pending",
    limit: PageSize = 50,
    cursor: Cursor = None,
    reason: ReviewReason | None = None,
) -> PredictionPage:
    """Pending: predictions that need review, least confident first. Reviewed: latest reviews first.

    `reason` keeps one kind: `audit` (a random sample of all traffic: review these first, they measure
    accuracy without bias), `uncertain`, `out_of_distribution` or `manual`.
    """
    gateway.require_database()
    page = review_queue(gateway.engine, status, limit, cursor, reason)
    return PredictionPage(items=[PredictionRecord.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.post(
    "/reviews/{prediction_id}",
    response_model=PredictionRecord,
    responses=error_responses(
        {
            403: "The key lacks the review scope.",
            404: "No such prediction.",
            415: "The body is not JSON (under a Content-Type other than application/json).",
            503: DATABASE_DOWN,
        }
    ),
)
def review(
    prediction_id: PredictionId,
    body: ReviewRequest,
    key: Annotated[KeyInfo, Depends(require_scope("review"))],
    gateway: Annotated[Gateway, Depends(get_gateway)],
) -> PredictionRecord:
    """Record the correct label for a prediction (any prediction, not only queued ones).

    The body is read as JSON whatever `Content-Type` it declares (`curl -d` sends a form type).
    """
    prediction, _ = submit_review(gateway, prediction_id, body, key)  # the console's decisions use it too
    return PredictionRecord.of(prediction)
