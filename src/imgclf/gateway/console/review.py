"""The review queue: one image at a time driven by the keyboard, or a grid to label many at once.

Decisions go through ``imgclf.gateway.reviewing.submit_review``, the code behind
``POST /v1/reviews/{id}``. The page carries a signed *trail* (``ReviewTrail``): the reviewer's
recent decisions with the review state each replaced (what ``u`` puts back) and the items they
skipped (left out of what comes next). It is signed with the session secret and bound to the key,
so a page cannot forge an undo; an undo only applies while nobody changed that review since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from pydantic import ValidationError
from starlette.responses import Response

from imgclf.gateway.console.base import (
    Console,
    ConsoleRoute,
    ConsoleUser,
    console_of,
    fields_list,
    form_fields,
    form_value,
    gateway_of,
    is_htmx,
    redirect,
    render,
    require,
    signed_in,
)
from imgclf.gateway.reviewing import ReviewState, queue_counts, submit_review, undo_review
from imgclf.gateway.schemas import ReviewRequest
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import as_utc, get_prediction, review_queue

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

REASONS = ("audit", "uncertain", "out_of_distribution", "manual")
HISTORY = 20  # decisions u can walk back
SKIPPED = 200  # skipped items remembered per page
GRID_SIZE = 48
PredictionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@dataclass
class ReviewTrail:
    key_id: str
    reason: str | None = None  # the queue filters this page shows
    label: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, console: Console, token: str | None, user: ConsoleUser) -> ReviewTrail:
        data = console.sessions.unsign(token) if token else None
        if not isinstance(data, dict) or data.get("k") != user.key.id:
            return cls(user.key.id)
        return cls(user.key.id, data.get("r"), data.get("c"), list(data.get("h", [])), list(data.get("s", [])))

    def token(self, console: Console) -> str:
        return console.sessions.sign(
            {"k": self.key_id, "r": self.reason, "c": self.label, "h": self.history[-HISTORY:],
             "s": self.skipped[-SKIPPED:]}
        )  # fmt: skip

    def record(self, prediction: Prediction, previous: ReviewState) -> None:
        at = as_utc(prediction.reviewed_at).isoformat() if prediction.reviewed_at else None
        before = [previous.label, previous.reviewer, previous.reviewed_at.isoformat() if previous.reviewed_at else None,
                  previous.reason]  # fmt: skip
        self.history.append({"i": prediction.id, "l": prediction.review_label, "r": prediction.reviewer, "a": at,
                             "p": before})  # fmt: skip
        del self.history[:-HISTORY]


def _state(label: str | None, reviewer: str | None, at: str | None, reason: str | None) -> ReviewState:
    return ReviewState(label, reviewer, as_utc(datetime.fromisoformat(at)) if at else None, reason)


def _filters(reason: str | None, label: str | None) -> tuple[str | None, str | None]:
    reason = reason if reason in REASONS else None
    label = label.strip() if label and label.strip() and len(label) <= 200 and label.isprintable() else None
    return reason, label


def top_scores(prediction: Prediction, count: int = 3) -> list[tuple[str, float]]:
    return sorted(prediction.scores.items(), key=lambda item: -item[1])[:count]


async def _next_item(request: Request, trail: ReviewTrail) -> Prediction | None:
    gateway = gateway_of(request)
    gateway.require_database()
    page = await gateway.run_blocking(
        lambda: review_queue(gateway.engine, "pending", 1, None, trail.reason, trail.skipped, trail.label)
    )
    return page.items[0] if page.items else None


async def _workspace(
    request: Request,
    user: ConsoleUser,
    trail: ReviewTrail,
    item: Prediction | None,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    gateway = gateway_of(request)
    counts = await gateway.run_blocking(queue_counts, gateway)
    context = {
        "item": item,
        "top": top_scores(item) if item else [],
        "classes": list(item.scores)[:9] if item else [],
        "counts": counts,
        "reasons": REASONS,
        "trail": trail,
        "trail_token": trail.token(console_of(request)),
        "message": message,
        "error": error,
    }
    template = "review_workspace.html" if is_htmx(request) else "review.html"
    return render(request, template, context, status=status, user=user)


@router.get("/review")
async def review_page(
    request: Request,
    user: Annotated[ConsoleUser, Depends(signed_in)],
    reason: str | None = None,
    label: str | None = None,
) -> Response:
    require(user, "review")
    trail = ReviewTrail(user.key.id, *_filters(reason, label))
    return await _workspace(request, user, trail, await _next_item(request, trail))


async def _trail(request: Request, user: ConsoleUser) -> ReviewTrail:
    require(user, "review")
    return ReviewTrail.read(console_of(request), form_value(await form_fields(request), "trail"), user)


@router.post("/review/{prediction_id}/label")
async def decide(
    request: Request, prediction_id: PredictionId, user: Annotated[ConsoleUser, Depends(signed_in)]
) -> Response:
    trail = await _trail(request, user)
    fields = await form_fields(request)
    label = form_value(fields, "label") or form_value(fields, "new_label") or ""
    gateway = gateway_of(request)
    try:
        body = ReviewRequest(label=label)
    except ValidationError:
        current = await gateway.run_blocking(get_prediction, gateway.engine, prediction_id)
        error = "A label needs 1 to 200 characters and no control characters."
        return await _workspace(request, user, trail, current, error=error, status=422)
    prediction, previous = await gateway.run_blocking(submit_review, gateway, prediction_id, body, user.key)
    trail.record(prediction, previous)
    message = f"Labelled {body.label}."
    return await _workspace(request, user, trail, await _next_item(request, trail), message=message)


@router.post("/review/{prediction_id}/skip")
async def skip(
    request: Request, prediction_id: PredictionId, user: Annotated[ConsoleUser, Depends(signed_in)]
) -> Response:
    trail = await _trail(request, user)
    if prediction_id not in trail.skipped:
        trail.skipped.append(prediction_id)
    return await _workspace(request, user, trail, await _next_item(request, trail), message="Skipped.")


@router.post("/review/undo")
async def undo(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    trail = await _trail(request, user)
    gateway = gateway_of(request)
    if not trail.history:
        return await _workspace(request, user, trail, await _next_item(request, trail), error="Nothing to undo.")
    last = trail.history.pop()
    previous = _state(*last["p"])
    decided = _state(last["l"], last["r"], last["a"], previous.reason or "manual")
    undone = await gateway.run_blocking(undo_review, gateway, last["i"], decided, previous)
    if last["i"] in trail.skipped:
        trail.skipped.remove(last["i"])
    item = await gateway.run_blocking(get_prediction, gateway.engine, last["i"])
    if not undone:
        error = "Not undone: this review was changed by someone else since your decision."
        return await _workspace(request, user, trail, item, error=error, status=409)
    return await _workspace(request, user, trail, item, message=f"Undone: {last['l']} taken back.")


# ---------------------------------------------------------------------------------------------- grid


@router.get("/review/grid")
async def grid_page(
    request: Request,
    user: Annotated[ConsoleUser, Depends(signed_in)],
    reason: str | None = None,
    label: str | None = None,
    done: int | None = None,
    applied: str | None = None,
) -> Response:
    require(user, "review")
    reason, label = _filters(reason, label)
    gateway = gateway_of(request)
    gateway.require_database()
    page = await gateway.run_blocking(
        lambda: review_queue(gateway.engine, "pending", GRID_SIZE, None, reason, (), label)
    )
    counts = await gateway.run_blocking(queue_counts, gateway)
    classes: list[str] = []
    for item in page.items:
        classes += [name for name in item.scores if name not in classes]
    message = f"Labelled {done} images {applied}." if done is not None and applied else None
    context = {"items": page.items, "classes": classes[:9], "counts": counts, "reasons": REASONS,
               "reason": reason, "label": label, "message": message, "error": None}  # fmt: skip
    return render(request, "review_grid.html", context, user=user)


@router.post("/review/grid")
async def grid_label(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "review")
    fields = await form_fields(request)
    reason, label_filter = _filters(form_value(fields, "reason"), form_value(fields, "label_filter"))
    ids = fields_list(fields, "ids")[:GRID_SIZE]
    label = form_value(fields, "label") or form_value(fields, "new_label") or ""
    try:
        body = ReviewRequest(label=label)
    except ValidationError:
        body = None
    params = {k: v for k, v in (("reason", reason), ("label", label_filter)) if v}
    if body is None or not ids:
        return redirect("/ui/review/grid" + ("?" + urlencode(params) if params else ""))
    gateway = gateway_of(request)

    def label_all() -> int:
        for prediction_id in ids:
            submit_review(gateway, prediction_id, body, user.key)
        return len(ids)

    count = await gateway.run_blocking(label_all)
    return redirect("/ui/review/grid?" + urlencode({**params, "done": count, "applied": body.label}))
