"""What ``POST /v1/predict`` does, as a plain library call: validate, classify, decide, record.

The HTTP layer only parses the request and renders the result; everything here is synchronous
and testable without a server.

Example:
    >>> limits, policy = UploadLimits.from_settings(), ReviewPolicy.from_settings()
    >>> service = PredictionService(backend, ModelCards(registry), store, log, limits, policy)
    >>> outcome = service.predict([NamedImage("cat.jpg", data)], api_key_id=None, request_id="r1")
    >>> outcome.predictions[0].label, outcome.predictions[0].needs_review, outcome.predictions[0].ood_score
    ('cats', False, 0.71)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.config import GatewaySettings
from imgclf.data.image_validation import ImageUpload, UploadLimits, validate_image
from imgclf.errors import MonitoringError, ServingError, UploadError
from imgclf.gateway.backends import BackendAnswer, ModelBackend, ModelCard, read_model_card
from imgclf.gateway.metrics import GatewayMetrics
from imgclf.gateway.prediction_log import PredictionLog
from imgclf.gateway.routing import TrafficRouter
from imgclf.gateway.shadow import ShadowMirror
from imgclf.monitoring.input_stats import image_statistics, rounded
from imgclf.monitoring.ood import OutOfDistribution
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import compact_embedding
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import new_id, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedImage:
    name: str | None  # the upload's file name, only used in error messages
    data: bytes


@dataclass(frozen=True)
class ReviewPolicy:
    """A prediction needs review when its confidence or its top-2 margin is below these
    (``IMGCLF_REVIEW_CONFIDENCE_THRESHOLD``, ``IMGCLF_REVIEW_MARGIN``: build with ``from_settings``),
    or when it is out of distribution: its ``ood_score`` above ``ood_score_limit``
    (``IMGCLF_OOD_SCORE_LIMIT``), if ``review_out_of_distribution`` (``IMGCLF_REVIEW_OUT_OF_DISTRIBUTION``).
    A policy built by hand without ``ood_score_limit`` scores nothing (``ood_score`` None)."""

    confidence_threshold: float
    margin: float
    ood_score_limit: float | None = None
    review_out_of_distribution: bool = False
    audit_rate: float = 0.0  # share of all predictions queued at random (IMGCLF_REVIEW_AUDIT_RATE)

    @classmethod
    def from_settings(cls, settings: GatewaySettings | None = None) -> ReviewPolicy:
        settings = settings or GatewaySettings()
        return cls(
            settings.review_confidence_threshold,
            settings.review_margin,
            settings.ood_score_limit,
            settings.review_out_of_distribution,
            settings.review_audit_rate,
        )

    def audited(self, prediction_id: str) -> bool:
        """Whether a prediction is drawn for audit: by a hash of its id, so every replica agrees and
        the draw is independent of the image and of the model's confidence."""
        draw = int(hashlib.sha256(b"audit:" + prediction_id.encode()).hexdigest()[:13], 16) / 16**13
        return draw < self.audit_rate

    def review_reason(
        self, prediction_id: str, scores: np.ndarray, confidence: float, out_of_distribution: bool | None = None
    ) -> str | None:
        """Why a prediction enters the review queue (``audit``, ``uncertain``, ``out_of_distribution``), or None.
        An audit draw wins: the audit sample must not depend on confidence."""
        return "audit" if self.audited(prediction_id) else self._unsure(scores, confidence, out_of_distribution)

    def _unsure(self, scores: np.ndarray, confidence: float, out_of_distribution: bool | None) -> str | None:
        top = np.sort(scores)[::-1]
        margin = float(top[0] - top[1]) if len(top) > 1 else 1.0
        if confidence < self.confidence_threshold or margin < self.margin:
            return "uncertain"
        if out_of_distribution and self.review_out_of_distribution:
            return "out_of_distribution"
        return None

    def out_of_distribution(self, ood_score: float | None) -> bool | None:
        """Whether a score is beyond the limit; None without a score."""
        if ood_score is None or self.ood_score_limit is None:
            return None
        return ood_score > self.ood_score_limit


@dataclass(frozen=True)
class ImagePrediction:
    id: str
    label: str
    confidence: float
    scores: dict[str, float]
    threshold: float | None
    needs_review: bool
    image: ImageUpload
    embedding: list[float] | None = None  # the export's embedding_projection, for drift monitoring
    statistics: dict[str, float] | None = None  # input statistics, for drift monitoring (None: not measured)
    ood_score: float | None = None  # imgclf.monitoring.ood: > 1 lies beyond the reference (None: no calibrated profile)
    out_of_distribution: bool | None = None  # ood_score above the policy's limit
    review_reason: str | None = None  # why it needs review: audit, uncertain, out_of_distribution


@dataclass(frozen=True)
class PredictOutcome:
    model_name: str
    model_version: int
    predictions: list[ImagePrediction]
    latency_ms: float
    stored: bool  # False: the records were spooled to disk (database down)


def _reason(message: str) -> str:
    """The line of a TensorFlow error that says what is wrong, without graph and node details.

    >>> _reason("Graph execution error:\\n<stack traces unavailable>\\nInvalid JPEG data.\\n\\t [[{{node d}}]]")
    'Invalid JPEG data.'
    """
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines()]
    return next((line for line in lines if line and not line.startswith(noise)), "refused by the model")


def _statistics(upload: ImageUpload, measured: np.ndarray | None) -> dict[str, float] | None:
    """The export's input statistics of one image; Pillow's for exports made before they were an output.

    Never a reason to refuse an upload: a measurement that fails is recorded as None.
    """
    if measured is not None:
        return rounded(measured)
    try:
        return image_statistics(upload.data).values
    except Exception as error:  # Pillow raises many types on hostile data
        log.warning("input statistics of %s failed: %s", upload.sha256, error)
        return None


class ModelCards:
    """Model cards from the registry, read once per version."""

    def __init__(self, registry: Path) -> None:
        self.registry = Path(registry)
        self._cards: dict[tuple[str, int], ModelCard] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int) -> ModelCard:
        with self._lock:
            card = self._cards.get((name, version))
        if card is None:
            card = read_model_card(self.registry, name, version)
            with self._lock:
                self._cards[(name, version)] = card
        return card


class OutOfDistributionScorers:
    """Each version's out-of-distribution scorer, from its reference profile, read once per version.

    None for a version whose profile is missing or has no calibration (exports made before it):
    its predictions get no ``ood_score``, and that is logged once, not per request.
    """

    def __init__(self, registry: Path) -> None:
        self.registry = Path(registry)
        self._scorers: dict[tuple[str, int], OutOfDistribution | None] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int) -> OutOfDistribution | None:
        key = (name, version)
        with self._lock:
            if key in self._scorers:
                return self._scorers[key]
        try:
            scorer = ReferenceProfile.load(self.registry / name / str(version)).ood
            if scorer is None:
                log.info("%s version %s: its reference profile has no out-of-distribution calibration", name, version)
        except MonitoringError as error:
            log.warning("%s version %s: no out-of-distribution scores: %s", name, version, error)
            scorer = None
        with self._lock:
            self._scorers[key] = scorer
        return scorer


class PredictionService:
    def __init__(
        self,
        backend: ModelBackend,
        cards: ModelCards,
        store: ImageStore,
        prediction_log: PredictionLog,
        limits: UploadLimits,
        policy: ReviewPolicy,
        metrics: GatewayMetrics | None = None,
        router: TrafficRouter | None = None,
        shadow: ShadowMirror | None = None,
        compare_canary: bool = True,
    ) -> None:
        self.backend = backend
        self.cards = cards
        self.store = store
        self.log = prediction_log
        self.limits = limits
        self.policy = policy
        self.metrics = metrics
        self.router = router
        self.shadow = shadow
        self.compare_canary = compare_canary
        self.ood_scorers = OutOfDistributionScorers(cards.registry)

    def validate(self, images: list[NamedImage]) -> list[ImageUpload]:
        """Every image checked; the first refusal names the image (index and file name)."""
        uploads = []
        for index, image in enumerate(images):
            try:
                uploads.append(validate_image(image.data, self.limits))
            except UploadError as error:
                raise self._refusal(index, image, error) from None
        return uploads

    def _refusal(self, index: int, image: NamedImage, error: UploadError) -> UploadError:
        """``error`` counted, and its message prefixed with which image it is about."""
        if self.metrics is not None:
            self.metrics.upload_rejections.labels(error.code).inc()
        where = f"image {index}" + (f" ({image.name})" if image.name else "")
        return UploadError(error.code, f"{where}: {error.message}", error.status)

    def _undecodable(
        self,
        images: list[NamedImage],
        uploads: list[ImageUpload],
        version: int | None,
        label: str | None,
        error: ServingError,
    ) -> UploadError | None:
        """If the model refused the request (``error`` is INVALID_ARGUMENT): the refusal naming the image
        it cannot decode (a complete file with broken data, which validation does not decode).

        One image is the culprit; of several, each is classified alone to find it (only on this
        rare error path). None if the error is another, or no image is refused alone.
        """
        if error.code != "INVALID_ARGUMENT":
            return None
        found = (0, error) if len(uploads) == 1 else self._refused_alone(uploads, version, label)
        if found is None:
            return None
        index, refusal = found
        refused = UploadError("corrupt_image", f"the image does not decode: {_reason(refusal.message)}")
        return self._refusal(index, images[index], refused)

    def _refused_alone(
        self, uploads: list[ImageUpload], version: int | None, label: str | None
    ) -> tuple[int, ServingError] | None:
        """The first image the model refuses (INVALID_ARGUMENT) when classified on its own, or None."""
        for index, upload in enumerate(uploads):
            try:
                self.backend.classify([upload.data], version=version, label=label)
            except ServingError as error:
                return (index, error) if error.code == "INVALID_ARGUMENT" else None
        return None

    def predict(
        self,
        images: list[NamedImage],
        api_key_id: str | None,
        request_id: str,
        version: int | None = None,
        label: str | None = None,
    ) -> PredictOutcome:
        started = time.perf_counter()
        uploads = self.validate(images)
        role = "requested"
        routed = version is None and label is None and self.router is not None
        if routed:
            route = self.router.route(api_key_id)  # type: ignore[union-attr]
            version, role = route.version, route.role
        try:
            try:
                answer, predictions = self._classify(uploads, version, label)
            except ServingError as error:
                if not (routed and version is not None and error.code == "NOT_FOUND"):
                    raise
                # The routed version was unloaded between the router's look and the call (a canary
                # rolled back, a stable moved): the next version in line answers instead.
                route = self.router.route(api_key_id, exclude=frozenset({version}))  # type: ignore[union-attr]
                version, role = route.version, route.role
                answer, predictions = self._classify(uploads, version, label)
        except ServingError as error:
            refusal = self._undecodable(images, uploads, version, label, error)
            if refusal is not None:
                raise refusal from None
            if self.metrics is not None and version is not None:  # a model failure (the judge compares these)
                self.metrics.backend_errors.labels(self.backend.model_name, str(version), role).inc()
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        stored = self._record(
            predictions, answer.model_name, answer.model_version, api_key_id, request_id, latency_ms, role
        )
        if self.metrics is not None:
            labels = (answer.model_name, str(answer.model_version), role)
            self.metrics.routed.labels(*labels).inc(len(predictions))
            self.metrics.model_latency.labels(*labels).observe(latency_ms / 1000)
        if self.shadow is not None and self.router is not None:
            shadow = self.router.shadow_version()
            if shadow is not None and shadow != answer.model_version:
                self.shadow.submit(lambda: self._mirror(uploads, shadow, predictions, api_key_id, request_id))
            stable = self.router.stable_version() if role == "canary" and self.compare_canary else None
            if stable is not None and stable != answer.model_version:
                self.shadow.submit(lambda: self._compare_with_stable(uploads, stable, answer, predictions))
        return PredictOutcome(answer.model_name, answer.model_version, predictions, latency_ms, stored)

    def _classify(
        self, uploads: list[ImageUpload], version: int | None, label: str | None, background: bool = False
    ) -> tuple[BackendAnswer, list[ImagePrediction]]:
        data = [u.data for u in uploads]
        answer = self.backend.classify(data, version=version, label=label, background=background)
        card = self.cards.get(answer.model_name, answer.model_version)
        if answer.scores.shape != (len(uploads), len(card.classes)):
            raise ServingError(
                "INTERNAL",
                f"the model answered scores of shape {list(answer.scores.shape)} for {len(uploads)} image(s) "
                f"and {len(card.classes)} classes",
            )
        predictions = []
        embeddings = (
            [None] * len(uploads) if answer.embeddings is None else [compact_embedding(e) for e in answer.embeddings]
        )
        statistics = answer.statistics if answer.statistics is not None else [None] * len(uploads)
        ood_scores = self._ood_scores(answer, embeddings)
        for upload, scores, class_id, embedding, stats, ood_score in zip(
            uploads, answer.scores, answer.class_ids, embeddings, statistics, ood_scores, strict=True
        ):
            confidence = float(scores[int(class_id)])
            unfamiliar = self.policy.out_of_distribution(ood_score)
            prediction_id = new_id()
            reason = self.policy.review_reason(prediction_id, scores, confidence, unfamiliar)
            predictions.append(
                ImagePrediction(
                    id=prediction_id,
                    label=card.classes[int(class_id)],
                    confidence=confidence,
                    scores={name: float(s) for name, s in zip(card.classes, scores, strict=True)},
                    threshold=card.threshold,
                    needs_review=reason is not None,
                    review_reason=reason,
                    image=upload,
                    embedding=embedding,
                    statistics=_statistics(upload, stats),
                    ood_score=ood_score,
                    out_of_distribution=unfamiliar,
                )
            )
        return answer, predictions

    def _ood_scores(self, answer: BackendAnswer, embeddings: list[list[float] | None]) -> list[float | None]:
        """Each image's ``ood_score`` (its embedding as stored against the profile's, stored alike), or Nones."""
        if self.policy.ood_score_limit is None or answer.embeddings is None:
            return [None] * len(embeddings)
        scorer = self.ood_scorers.get(answer.model_name, answer.model_version)
        if scorer is None or scorer.reference.shape[1] != len(embeddings[0] or ()):
            return [None] * len(embeddings)
        return [round(float(score), 4) for score in scorer.scores(np.array(embeddings, dtype=np.float64))]

    def _mirror(
        self,
        uploads: list[ImageUpload],
        version: int,
        primary: list[ImagePrediction],
        api_key_id: str | None,
        request_id: str,
    ) -> None:
        """Classify with the shadow version and store the result; nobody waits for this."""
        started = time.perf_counter()
        answer, predictions = self._classify(uploads, version, None, background=True)
        latency_ms = (time.perf_counter() - started) * 1000
        # Shadow rows never enter the review queue: reviewers label what clients were answered.
        predictions = [dataclasses.replace(p, needs_review=False, review_reason=None) for p in predictions]
        self._record(predictions, answer.model_name, answer.model_version, api_key_id, request_id, latency_ms, "shadow")
        if self.metrics is not None:
            self._count_agreement(answer, predictions, primary, "shadow")
            self.metrics.model_latency.labels(answer.model_name, str(answer.model_version), "shadow").observe(
                latency_ms / 1000
            )

    def _compare_with_stable(
        self, uploads: list[ImageUpload], stable: int, canary: BackendAnswer, predictions: list[ImagePrediction]
    ) -> None:
        """Classify a canary-answered request with stable too; only the agreement is kept."""
        _, stable_predictions = self._classify(uploads, stable, None, background=True)
        if self.metrics is not None:
            self._count_agreement(canary, predictions, stable_predictions, "canary")

    def _count_agreement(
        self, candidate: BackendAnswer, mine: list[ImagePrediction], theirs: list[ImagePrediction], role: str
    ) -> None:
        assert self.metrics is not None
        labels = (candidate.model_name, str(candidate.model_version), role)
        for a, b in zip(mine, theirs, strict=True):
            self.metrics.agreement.labels(*labels, "yes" if a.label == b.label else "no").inc()

    def _record(
        self,
        predictions: list[ImagePrediction],
        model_name: str,
        model_version: int,
        api_key_id: str | None,
        request_id: str,
        latency_ms: float,
        role: str,
    ) -> bool:
        if role != "shadow":  # the answered request stored the image already
            for prediction in predictions:
                try:
                    self.store.put(prediction.image.data)
                except OSError as error:  # the answer matters more than the copy for reviewers
                    log.error("image %s not stored: %s", prediction.image.sha256, error)
        now = utcnow()
        rows = [
            {
                "id": p.id,
                "created_at": now,
                "request_id": request_id,
                "api_key_id": api_key_id,
                "image_sha256": p.image.sha256,
                "image_bytes": len(p.image.data),
                "image_format": p.image.format,
                "width": p.image.width,
                "height": p.image.height,
                "model_name": model_name,
                "model_version": model_version,
                "label": p.label,
                "confidence": p.confidence,
                "scores": p.scores,
                "threshold": p.threshold,
                "latency_ms": latency_ms,
                "needs_review": p.needs_review,
                "input_stats": p.statistics,
                "embedding": p.embedding,
                "ood_score": p.ood_score,
                "out_of_distribution": p.out_of_distribution,
                "review_reason": p.review_reason,
                "role": role,
            }
            for p in predictions
        ]
        stored = self.log.write(rows)
        if self.metrics is not None and role != "shadow":
            self._count(predictions, model_name, model_version, stored)
        return stored

    def _count(self, predictions: list[ImagePrediction], model_name: str, model_version: int, stored: bool) -> None:
        m, version = self.metrics, str(model_version)
        assert m is not None
        for p in predictions:
            m.upload_bytes.observe(len(p.image.data))
            m.predictions.labels(model_name, version, p.label).inc()
            m.confidence.labels(model_name, version).observe(p.confidence)
            if p.needs_review:
                m.needs_review.labels(model_name, version).inc()
        if not stored:
            m.spooled.inc(len(predictions))
