"""Classify: upload one or more images (file picker or drag and drop) and see the answers.

The upload goes through ``PredictionService.predict``, the code behind ``POST /v1/predict``: the
same validation, routing (stable or canary by the key), prediction log and review queue, charged to
the signed-in key's rate limit.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from imgclf.errors import UploadError
from imgclf.gateway.console.base import (
    ConsoleRoute,
    ConsoleUser,
    form_fields,
    gateway_of,
    is_htmx,
    render,
    require,
    signed_in,
)
from imgclf.gateway.errors import request_id_of
from imgclf.gateway.multipart import FormPart
from imgclf.gateway.service import NamedImage, PredictOutcome

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)


def _page(request: Request, user: ConsoleUser, outcome: PredictOutcome | None, error: str | None, status: int = 200):  # type: ignore[no-untyped-def]
    results = []
    if outcome is not None:
        for p in outcome.predictions:
            top = sorted(p.scores.items(), key=lambda item: -item[1])[:5]
            results.append({"p": p, "top": top})
    context = {"outcome": outcome, "results": results, "error": error,
               "max_images": gateway_of(request).settings.max_images_per_request}  # fmt: skip
    template = "classify_results.html" if is_htmx(request) else "classify.html"
    return render(request, template, context, status=status, user=user)


@router.get("/classify")
async def classify_page(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "predict")
    return _page(request, user, None, None)


@router.post("/classify")
async def classify(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "predict")
    gateway = gateway_of(request)
    fields = await form_fields(request)
    if not isinstance(fields, list):
        return _page(request, user, None, "Send the images as a file upload (multipart/form-data).", 415)
    images = [NamedImage(p.filename, p.data) for p in fields if isinstance(p, FormPart) and p.filename and p.data]
    if not images:
        return _page(request, user, None, "Choose or drop at least one image.", 400)
    limit = gateway.settings.max_images_per_request
    if len(images) > limit:
        return _page(request, user, None, f"{len(images)} images; at most {limit} at once.", 400)
    decision = await gateway.run_blocking(gateway.rate_limiter.acquire, user.key.id)
    if not decision.allowed:
        gateway.metrics.rate_limited.inc()
        retry = max(1, math.ceil(decision.retry_after))
        response = _page(request, user, None, f"Rate limit reached for this key; try again in {retry} s.", 429)
        response.headers["Retry-After"] = str(retry)
        return response
    try:
        outcome = await gateway.run_blocking(gateway.service.predict, images, user.key.id, request_id_of(request))
    except UploadError as error:
        return _page(request, user, None, error.message, error.status)
    return _page(request, user, outcome, None)
