"""Predictions: the log with the API's filters, thumbnails and cursor pages; one prediction's page.

People with ``review`` (or ``admin``) see every prediction and can set a prediction's label from its
page (the same ``submit_review`` as ``POST /v1/reviews/{id}``); ``predict``-only keys see their own.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response

from imgclf.gateway.console.base import (
    ConsoleRoute,
    ConsoleUser,
    form_fields,
    form_value,
    gateway_of,
    redirect,
    render,
    require,
    signed_in,
)
from imgclf.gateway.console.review import REASONS, PredictionId
from imgclf.gateway.reviewing import submit_review
from imgclf.gateway.schemas import PLAIN_TEXT, ReviewRequest
from imgclf.storage.predictions import PredictionFilter, as_utc, get_prediction, list_predictions, review_status

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

PAGE_SIZE = 50
INT4_MAX = 2**31 - 1
STATUSES = ("pending", "reviewed", "not_needed")
FILTER_NAMES = (
    "since",
    "until",
    "label",
    "model_version",
    "min_confidence",
    "max_confidence",
    "review_status",
    "reason",
)
_PLAIN = re.compile(PLAIN_TEXT)


def read_filters(params: QueryParams, owner: str | None) -> tuple[PredictionFilter, dict[str, str], list[str]]:
    """The filters a query asks for (empty fields ignored), the values to show back, and what was invalid."""
    values = {name: params.get(name, "").strip() for name in FILTER_NAMES}
    errors: list[str] = []
    parsed: dict[str, object] = {}

    def number(name: str, kind: type, low: float, high: float) -> None:
        try:
            value = kind(values[name])
            if not low <= value <= high:
                raise ValueError
            parsed[name] = value
        except ValueError:
            errors.append(f"{name.replace('_', ' ')} must be a number from {low} to {high}")

    for name in ("since", "until"):
        if values[name]:
            try:
                parsed[name] = as_utc(datetime.fromisoformat(values[name]))
            except (ValueError, OverflowError):
                errors.append(f"{name} must be a date and time (YYYY-MM-DDTHH:MM, UTC)")
    if values["label"]:
        if len(values["label"]) <= 200 and _PLAIN.match(values["label"]):
            parsed["label"] = values["label"]
        else:
            errors.append("label must be up to 200 characters without control characters")
    if values["model_version"]:
        number("model_version", int, 1, INT4_MAX)
    for name in ("min_confidence", "max_confidence"):
        if values[name]:
            number(name, float, 0, 1)
    if values["review_status"]:
        if values["review_status"] in STATUSES:
            parsed["review_status"] = values["review_status"]
        else:
            errors.append("review status must be pending, reviewed or not needed")
    if values["reason"]:
        if values["reason"] in REASONS:
            parsed["review_reason"] = values["reason"]
        else:
            errors.append("reason must be " + ", ".join(REASONS))
    return PredictionFilter(**parsed, api_key_id=owner), values, errors  # type: ignore[arg-type]


@router.get("/predictions")
async def predictions_page(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    filters, values, errors = read_filters(request.query_params, user.owner)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and (len(cursor) > 500 or not re.fullmatch(r"[A-Za-z0-9_=-]*", cursor)):
        cursor = None
        errors.append("that page link is not valid; showing the first page")
    gateway = gateway_of(request)
    gateway.require_database()
    page = await gateway.run_blocking(list_predictions, gateway.engine, filters, PAGE_SIZE, cursor)
    kept = {name: value for name, value in values.items() if value}
    next_url = "/ui/predictions?" + urlencode({**kept, "cursor": page.next_cursor}) if page.next_cursor else None
    first_url = "/ui/predictions" + ("?" + urlencode(kept) if kept else "")
    context = {
        "items": page.items, "values": values, "errors": errors, "statuses": STATUSES, "reasons": REASONS,
        "next_url": next_url, "first_url": first_url if cursor else None, "status_of": review_status,
    }  # fmt: skip
    return render(request, "predictions.html", context, status=422 if errors else 200, user=user)


@router.get("/predictions/{prediction_id}")
async def prediction_page(
    request: Request,
    prediction_id: PredictionId,
    user: Annotated[ConsoleUser, Depends(signed_in)],
    saved: int | None = None,
) -> Response:
    gateway = gateway_of(request)
    gateway.require_database()
    prediction = await gateway.run_blocking(get_prediction, gateway.engine, prediction_id, user.owner)
    scores = sorted(prediction.scores.items(), key=lambda item: -item[1])
    context = {"p": prediction, "scores": scores, "status": review_status(prediction), "saved": bool(saved),
               "error": None}  # fmt: skip
    return render(request, "prediction.html", context, user=user)


@router.post("/predictions/{prediction_id}/review")
async def review_one(
    request: Request, prediction_id: PredictionId, user: Annotated[ConsoleUser, Depends(signed_in)]
) -> Response:
    require(user, "review")
    fields = await form_fields(request)
    gateway = gateway_of(request)
    try:
        body = ReviewRequest(label=form_value(fields, "new_label") or form_value(fields, "label") or "")
    except ValidationError:
        prediction = await gateway.run_blocking(get_prediction, gateway.engine, prediction_id)
        scores = sorted(prediction.scores.items(), key=lambda item: -item[1])
        error = "A label needs 1 to 200 characters and no control characters."
        context = {"p": prediction, "scores": scores, "status": review_status(prediction), "saved": False,
                   "error": error}  # fmt: skip
        return render(request, "prediction.html", context, status=422, user=user)
    await gateway.run_blocking(submit_review, gateway, prediction_id, body, user.key)
    return redirect(f"/ui/predictions/{prediction_id}?saved=1")
