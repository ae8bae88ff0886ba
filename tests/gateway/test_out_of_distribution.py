"""Out-of-distribution scores in the gateway: in the answer, in the prediction log, in needs_review.

First ``PredictionService`` with a fake backend that answers chosen embeddings against a reference
profile of synthetic clusters (no model), then the real gateway over HTTP with a real export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from imgclf.config import GatewaySettings
from imgclf.contract import REFERENCE_PROFILE_FILE
from imgclf.gateway.prediction_log import PredictionLog
from imgclf.gateway.schemas import PredictionRecord, PredictResponse
from imgclf.gateway.service import ModelCards, NamedImage, PredictionService, ReviewPolicy
from imgclf.gateway.validation import UploadLimits
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import Window
from imgclf.storage.database import connect
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import get_prediction
from tests.conftest import encode, random_pixels
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import FakeBackend, bearer, upload

CLASSES = ["cat", "dog", "fox"]
CENTRES = np.random.default_rng(0).normal(0, 3, (3, 32))
SURE = [0.9, 0.05, 0.05]  # confident, wide margin: only the out-of-distribution flag can ask for review


def reference_profile(n: int = 300) -> ReferenceProfile:
    rng = np.random.default_rng(1)
    class_ids = rng.integers(0, 3, n)
    window = Window(
        classes=CLASSES,
        class_ids=class_ids,
        confidence=rng.uniform(0.6, 1, n),
        statistics={name: rng.normal(100, 10, n) for name in STATISTICS},
        formats=["JPEG"] * n,
        embeddings=CENTRES[class_ids] + rng.normal(0, 1, (n, 32)),
    )
    return ReferenceProfile.build(window, class_ids, "synthetic", {"output": "embedding_projection", "dim": 32})


@pytest.fixture
def parts(tmp_path):  # type: ignore[no-untyped-def]
    version_dir = tmp_path / "registry" / "pets" / "7"
    (version_dir / "assets.extra").mkdir(parents=True)
    (version_dir / "assets.extra" / "model_card.json").write_text(
        json.dumps({"classes": CLASSES, "decision": {"threshold": None}})
    )
    reference_profile().save(version_dir)
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield tmp_path, engine
    engine.dispose()


def service(tmp_path, engine, embeddings, policy: ReviewPolicy) -> PredictionService:  # type: ignore[no-untyped-def]
    return PredictionService(
        FakeBackend([SURE] * len(embeddings), embeddings=embeddings), ModelCards(tmp_path / "registry"),
        ImageStore(tmp_path / "images"), PredictionLog(engine, tmp_path / "spool"), UploadLimits.from_settings(),
        policy,
    )  # fmt: skip


def images(count: int) -> list[NamedImage]:
    return [NamedImage(f"{i}.png", encode(random_pixels(seed=i), "PNG")) for i in range(count)]


def predict(parts, policy: ReviewPolicy, count: int = 2):  # type: ignore[no-untyped-def]
    """The familiar and the far embedding (the first ``count``) through a service with ``policy``."""
    tmp_path, engine = parts
    return service(tmp_path, engine, FAMILIAR_AND_FAR, policy).predict(images(count), None, "r").predictions


FAMILIAR_AND_FAR = np.stack([CENTRES[1], CENTRES[1] + 12.0])  # a class centre; far from every class


def test_scores_are_answered_logged_and_far_embeddings_need_review(parts):
    tmp_path, engine = parts
    policy = ReviewPolicy.from_settings(GatewaySettings(_env_file=None, review_audit_rate=0))
    assert (policy.ood_score_limit, policy.review_out_of_distribution) == (1.0, True)
    outcome = service(tmp_path, engine, FAMILIAR_AND_FAR, policy).predict(images(2), None, "r1")
    familiar, far = outcome.predictions
    assert familiar.ood_score < 1 and familiar.out_of_distribution is False and familiar.needs_review is False
    assert far.ood_score > 2 and far.out_of_distribution is True and far.needs_review is True
    # The answer's JSON carries both fields.
    answered = PredictResponse.of(outcome, "r1").model_dump()["predictions"]
    assert [(a["ood_score"], a["out_of_distribution"]) for a in answered] == [
        (familiar.ood_score, False), (far.ood_score, True)
    ]  # fmt: skip
    # So does the prediction log, and what GET /v1/predictions/{id} renders from it.
    with engine.connect() as connection:
        rows = dict(
            connection.execute(select(Prediction.id, Prediction.ood_score)).all()  # type: ignore[arg-type]
        )
    assert rows == {familiar.id: pytest.approx(familiar.ood_score), far.id: pytest.approx(far.ood_score)}
    record = PredictionRecord.of(get_prediction(engine, far.id))
    assert (record.ood_score, record.out_of_distribution, record.needs_review) == (far.ood_score, True, True)
    assert record.review_status == "pending"
    # The scores are the export's calibration applied to the embedding as stored.
    profile = ReferenceProfile.load(tmp_path / "registry" / "pets" / "7")
    assert profile.ood.scores(np.array([far.embedding]))[0] == pytest.approx(far.ood_score, abs=1e-4)


def test_the_limit_and_the_review_switch_come_from_the_settings(parts):
    def policy(**settings) -> ReviewPolicy:  # type: ignore[no-untyped-def]
        return ReviewPolicy.from_settings(GatewaySettings(_env_file=None, review_audit_rate=0, **settings))

    quiet = predict(parts, policy(review_out_of_distribution=False))
    assert [p.out_of_distribution for p in quiet] == [False, True]
    assert [p.needs_review for p in quiet] == [False, False]  # flagged, but not queued
    # Everything is beyond this limit.
    strict = predict(parts, policy(ood_score_limit=1e-6))
    assert [(p.out_of_distribution, p.needs_review) for p in strict] == [(True, True), (True, True)]


def test_versions_without_a_calibrated_profile_answer_without_a_score(parts):
    tmp_path, engine = parts
    policy = ReviewPolicy.from_settings(GatewaySettings(_env_file=None, review_audit_rate=0))
    path = tmp_path / "registry" / "pets" / "7" / REFERENCE_PROFILE_FILE
    data = json.loads(path.read_text())
    del data["ood"]  # a profile written before the calibration existed
    path.write_text(json.dumps(data))
    answered = predict(parts, policy)
    assert [(p.ood_score, p.out_of_distribution, p.needs_review) for p in answered] == [(None, None, False)] * 2
    path.unlink()  # an export without any profile
    assert predict(parts, policy, 1)[0].ood_score is None
    # A policy built by hand without a limit scores nothing.
    assert predict(parts, ReviewPolicy(0.7, 0.2), 1)[0].ood_score is None
    with engine.connect() as connection:
        assert set(connection.scalars(select(Prediction.ood_score))) == {None}


def test_the_gateway_answers_and_logs_scores_of_a_real_export(cats_dogs_registry, photos, database_url, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, database_url)
    with running_gateway(settings) as gw:
        key = gw.key("predict,review")
        response = gw.client.post("/v1/predict", files=upload(photos), headers=bearer(key))
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        for answer in answers:
            assert isinstance(answer["ood_score"], float) and answer["ood_score"] >= 0
            assert answer["out_of_distribution"] == (answer["ood_score"] > 1)
            if answer["out_of_distribution"]:
                assert answer["needs_review"]
        stored = gw.client.get(f"/v1/predictions/{answers[0]['id']}", headers=bearer(key)).json()
        assert (stored["ood_score"], stored["out_of_distribution"]) == (
            answers[0]["ood_score"], answers[0]["out_of_distribution"]
        )  # fmt: skip
        with gw.gateway.engine.connect() as connection:
            logged = dict(connection.execute(select(Prediction.id, Prediction.ood_score)).all())  # type: ignore[arg-type]
        assert logged == {a["id"]: pytest.approx(a["ood_score"]) for a in answers}

    # The fixture's one-epoch 32 px CNN has no embedding worth the name (its photos and noise score alike:
    # benchmarks/ood.py measures a real backbone), so a limit below every score stands in for strange images.
    strict = settings.model_copy(update={"ood_score_limit": 1e-6})
    with running_gateway(strict) as gw:
        key = gw.key("predict,review")
        answers = gw.client.post("/v1/predict", files=upload(photos, 2), headers=bearer(key)).json()["predictions"]
        assert all(a["out_of_distribution"] and a["needs_review"] for a in answers), answers
        pending = gw.client.get("/v1/reviews", params={"status": "pending"}, headers=bearer(key)).json()["items"]
        assert {a["id"] for a in answers} <= {p["id"] for p in pending}
        assert all(p["out_of_distribution"] for p in pending if p["id"] in {a["id"] for a in answers})
