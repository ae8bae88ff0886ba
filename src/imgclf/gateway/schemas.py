"""Request and response bodies of the gateway's HTTP API (what ``/docs`` shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from imgclf.data.image_validation import ImageUpload
from imgclf.gateway.service import PredictOutcome
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import ReviewStatus, as_utc, review_status


class ErrorDetail(BaseModel):
    code: str = Field(examples=["unsupported_format"])
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for a route's error answers, all in the ``ErrorBody`` shape."""
    return {code: {"model": ErrorBody, "description": text} for code, text in descriptions.items()}


DATABASE_DOWN = "The database does not answer; see Retry-After."
OOD_SCORE = (
    "How far the image's embedding lies from the images the model version was checked on (its reference "
    "profile): the distance to the 5th nearest reference embedding over a threshold calibrated so that about "
    "5 % of images like the reference score above 1. Above 1: out of distribution. Null: the version's export "
    "has no calibrated reference profile."
)
ReviewReason = Literal["uncertain", "out_of_distribution", "audit", "manual"]
REVIEW_REASON = (
    "Why it is in the review queue: uncertain (low confidence or a close second), out_of_distribution, "
    "audit (a random sample of all traffic, IMGCLF_REVIEW_AUDIT_RATE), manual (reviewed without being "
    "queued); null: not queued."
)
OUT_OF_DISTRIBUTION = "ood_score above the gateway's limit (IMGCLF_OOD_SCORE_LIMIT); null without a score."


class PredictJsonBody(BaseModel):
    """The JSON form of `POST /v1/predict` (multipart `files` is the other)."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(min_length=1, description="Encoded image files (JPEG, PNG, GIF, BMP, WebP) as base64.")


class ImageInfo(BaseModel):
    sha256: str
    format: str
    width: int
    height: int
    bytes: int

    @classmethod
    def of(cls, upload: ImageUpload) -> ImageInfo:
        return cls(sha256=upload.sha256, format=upload.format, width=upload.width, height=upload.height,
                   bytes=len(upload.data))  # fmt: skip


class PredictedImage(BaseModel):
    id: str = Field(description="Prediction id: GET /v1/predictions/{id}, POST /v1/reviews/{id}.")
    label: str
    confidence: float = Field(description="Score of the chosen label.")
    scores: dict[str, float] = Field(description="Every class's score.")
    threshold: float | None = Field(description="Binary decision threshold applied (None: highest score wins).")
    needs_review: bool = Field(
        description="Low confidence, a close second class, out of distribution, or drawn for audit."
    )
    review_reason: ReviewReason | None = Field(description=REVIEW_REASON)
    ood_score: float | None = Field(description=OOD_SCORE)
    out_of_distribution: bool | None = Field(description=OUT_OF_DISTRIBUTION)
    model_name: str
    model_version: int
    image: ImageInfo


class PredictResponse(BaseModel):
    request_id: str
    model_name: str
    model_version: int
    latency_ms: float = Field(description="Validation and classification time in the gateway.")
    predictions: list[PredictedImage]

    @classmethod
    def of(cls, outcome: PredictOutcome, request_id: str) -> PredictResponse:
        name, version = outcome.model_name, outcome.model_version
        predictions = [
            PredictedImage(
                id=p.id,
                label=p.label,
                confidence=p.confidence,
                scores=p.scores,
                threshold=p.threshold,
                needs_review=p.needs_review,
                review_reason=p.review_reason,  # type: ignore[arg-type]
                ood_score=p.ood_score,
                out_of_distribution=p.out_of_distribution,
                model_name=name,
                model_version=version,
                image=ImageInfo.of(p.image),
            )
            for p in outcome.predictions
        ]
        return cls(
            request_id=request_id,
            model_name=name,
            model_version=version,
            latency_ms=round(outcome.latency_ms, 3),
            predictions=predictions,
        )


class Review(BaseModel):
    label: str
    reviewer: str
    reviewed_at: datetime
    new_class: bool = Field(description="The label is not one of the model's classes.")


class PredictionRecord(BaseModel):
    id: str
    created_at: datetime
    request_id: str
    model_name: str
    model_version: int
    label: str
    confidence: float
    scores: dict[str, float]
    threshold: float | None
    needs_review: bool
    review_reason: ReviewReason | None = Field(None, description=REVIEW_REASON)
    ood_score: float | None = Field(None, description=OOD_SCORE)
    out_of_distribution: bool | None = Field(None, description=OUT_OF_DISTRIBUTION)
    latency_ms: float
    image: ImageInfo
    review_status: ReviewStatus
    review: Review | None

    @classmethod
    def of(cls, p: Prediction) -> PredictionRecord:
        review = None
        if p.review_label is not None and p.reviewed_at is not None:
            review = Review(
                label=p.review_label,
                reviewer=p.reviewer or "",
                reviewed_at=as_utc(p.reviewed_at),
                new_class=p.review_label not in p.scores,
            )
        image = ImageInfo(
            sha256=p.image_sha256, format=p.image_format, width=p.width, height=p.height, bytes=p.image_bytes
        )
        return cls(
            id=p.id,
            created_at=as_utc(p.created_at),
            request_id=p.request_id,
            model_name=p.model_name,
            model_version=p.model_version,
            label=p.label,
            confidence=p.confidence,
            scores=p.scores,
            threshold=p.threshold,
            needs_review=p.needs_review,
            review_reason=p.review_reason,  # type: ignore[arg-type]
            ood_score=p.ood_score,
            out_of_distribution=p.out_of_distribution,
            latency_ms=p.latency_ms,
            image=image,
            review_status=review_status(p),
            review=review,
        )


class PredictionPage(BaseModel):
    items: list[PredictionRecord]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


# Text a person typed (labels, reviewer names, filters): no control characters. A NUL is refused by
# PostgreSQL, and a line break in a label would add a class to the next export's labels.txt.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PLAIN_TEXT)]


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label = Field(description="The correct class; a name the model does not know is recorded as a new class.")
    reviewer: Label | None = Field(None, description="Who reviewed; defaults to the API key's name.")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
