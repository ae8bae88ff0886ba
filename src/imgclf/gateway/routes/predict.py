"""``POST /v1/predict``: classify one or more uploaded images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imgclf.gateway.dependencies import KEY_SECURITY, authorize
from imgclf.gateway.errors import ApiError, request_id_of
from imgclf.gateway.runtime import Gateway
from imgclf.gateway.schemas import PredictJsonBody, PredictResponse, error_responses
from imgclf.gateway.uploads import read_images

router = APIRouter(prefix="/v1", tags=["predict"])

_OPENAPI = {
    "security": KEY_SECURITY,
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}
                    },
                    "additionalProperties": False,
                }
            },
            "application/json": {"schema": PredictJsonBody.model_json_schema()},  # inline: not a route parameter
        },
    },
}
_ERRORS = error_responses(
    {
        403: "The key lacks the predict scope.",
        404: "No such model version or label.",
        413: "Body or image over the size limit.",
        415: "Not an accepted image format or content type.",
        422: "Image too large in pixels, too many frames, or refused by the model.",
        503: "Model backend or database unavailable, or too many uploads in flight; see Retry-After.",
    }
)


@router.post("/predict", response_model=PredictResponse, openapi_extra=_OPENAPI, responses=_ERRORS)
async def predict(
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=2**62, description="A model version (default: latest).")] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=200, description="A version label.")] = None,
) -> Response:
    """Classify images sent as multipart `files` or as JSON `{"images": [base64, ...]}`.

    Each answer carries the label, its confidence, every class's score, the threshold applied,
    whether it needs human review, the model version and the prediction's id.
    """
    key = await authorize(request, ("predict",))
    if version is not None and label is not None:
        raise ApiError(400, "bad_request", "give a model version or a version label, not both")
    gateway: Gateway = request.app.state.gateway
    images = await read_images(request, gateway.settings.max_images_per_request)
    request_id = request_id_of(request)
    outcome = await gateway.run_blocking(gateway.service.predict, images, key.id, request_id, version, label)
    # Serialized once here: returned as a model, FastAPI would dump, re-validate and dump it again.
    body = PredictResponse.of(outcome, request_id).model_dump_json()
    return Response(body, media_type="application/json")
