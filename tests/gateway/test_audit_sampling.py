"""Issue 20: a random share of all predictions enters the review queue as ``audit``, whatever its
confidence; every queued item says why; the queue filters by reason; quality reports audited accuracy."""

from __future__ import annotations

import math

import numpy as np
from sqlalchemy import select

from imgclf.gateway.prediction_log import PredictionLog
from imgclf.gateway.service import ModelCards, NamedImage, PredictionService, ReviewPolicy
from imgclf.gateway.validation import UploadLimits
from imgclf.monitoring.quality import summarize_quality
from imgclf.monitoring.window import Window
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import Prediction, new_id
from imgclf.storage.predictions import record_review, review_queue
from tests.conftest import encode, random_pixels
from tests.helpers import FakeBackend

RATE = 0.05


def _within_three_sd(count: int, total: int, rate: float) -> bool:
    return abs(count - total * rate) <= 3 * math.sqrt(total * rate * (1 - rate))


def test_audit_share_matches_the_rate_whatever_the_confidence(parts):
    tmp_path, engine = parts
    rng = np.random.default_rng(0)
    top = rng.uniform(0.34, 1.0, 5000)  # from hopeless to certain
    scores = np.stack([top, (1 - top) * 0.6, (1 - top) * 0.4], axis=1)
    service = PredictionService(
        FakeBackend([[1, 0, 0]]), ModelCards(tmp_path / "registry"), ImageStore(tmp_path / "images"),
        PredictionLog(engine, tmp_path / "spool"),
        UploadLimits.from_settings(), ReviewPolicy(0.7, 0.2, audit_rate=RATE),
    )  # fmt: skip
    image = [NamedImage("x.png", encode(random_pixels(seed=1), "PNG"))]
    reasons = []
    for row in scores:  # one prediction at a time: the scores decide "uncertain", the id decides "audit"
        service.backend.scores = np.array([row], np.float32)
        (prediction,) = service.predict(image, api_key_id=None, request_id="r").predictions
        reasons.append(prediction.review_reason)
    audited = np.array([r == "audit" for r in reasons])
    assert _within_three_sd(int(audited.sum()), 5000, RATE), audited.sum()
    confident = top >= 0.7
    for part in (confident, ~confident):  # independent of confidence
        assert _within_three_sd(int(audited[part].sum()), int(part.sum()), RATE)
    assert {r for r, c in zip(reasons, confident, strict=True) if not c} <= {"audit", "uncertain"}
    with engine.connect() as connection:
        stored = dict(connection.execute(select(Prediction.id, Prediction.review_reason)).all())
    assert sorted(r or "" for r in stored.values()) == sorted(r or "" for r in reasons)
    # The queue filters by reason; a review of an item that was never queued is "manual".
    audit_page = review_queue(engine, "pending", limit=500, reason="audit")
    assert len(audit_page.items) == min(500, int(audited.sum()))
    assert all(p.review_reason == "audit" for p in audit_page.items)
    unqueued = next(pid for pid, reason in stored.items() if reason is None)
    assert record_review(engine, unqueued, "cat", "tester").review_reason == "manual"


def test_the_audit_draw_is_the_same_on_every_replica():
    one, other = ReviewPolicy(0.7, 0.2, audit_rate=0.1), ReviewPolicy(0.7, 0.2, audit_rate=0.1)
    ids = [new_id() for _ in range(2000)]
    assert [one.audited(i) for i in ids] == [other.audited(i) for i in ids]
    assert ReviewPolicy(0.7, 0.2).review_reason(ids[0], np.array([0.99, 0.01]), 0.99) is None  # rate 0: no audit


def test_quality_reports_audited_accuracy_with_a_wilson_interval():
    rows = [{"label": "cat", "confidence": 0.9, "review_label": "cat", "review_reason": "audit"}] * 45
    rows += [{"label": "cat", "confidence": 0.9, "review_label": "dog", "review_reason": "audit"}] * 5
    rows += [{"label": "cat", "confidence": 0.5, "review_label": "dog", "review_reason": "uncertain"}] * 50
    quality = summarize_quality(Window.from_records(rows, ["cat", "dog"]))
    assert quality.audited == 50 and quality.audited_accuracy == 0.9
    assert quality.realized_accuracy == 0.45  # all reviews: pulled down by the uncertain ones
    low, high = quality.audited_interval
    assert 0.78 < low < 0.8 and 0.95 < high < 0.96
