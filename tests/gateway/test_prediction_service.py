"""``PredictionService`` on its own (issue 18): a fake backend with chosen scores, the real image
store, prediction log and SQLite database. What reaches the caller, what is stored, what is queued
for review, and how backend errors are told apart, without a model or HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from imgclf.errors import ServingError, UploadError
from imgclf.gateway.prediction_log import PredictionLog
from imgclf.gateway.service import ModelCards, NamedImage, PredictionService, ReviewPolicy
from imgclf.gateway.validation import UploadLimits
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import Prediction
from tests.conftest import encode, random_pixels
from tests.helpers import FakeBackend


def service(tmp_path, engine, backend) -> PredictionService:  # type: ignore[no-untyped-def]
    return PredictionService(
        backend, ModelCards(tmp_path / "registry"), ImageStore(tmp_path / "images"),
        PredictionLog(engine, tmp_path / "spool"), UploadLimits.from_settings(), ReviewPolicy(0.7, 0.2),
    )  # fmt: skip


def test_answers_are_stored_and_the_uncertain_ones_queued(parts):
    tmp_path, engine = parts
    images = [NamedImage(f"{i}.png", encode(random_pixels(seed=i), "PNG")) for i in range(3)]
    scores = [[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [0.05, 0.15, 0.8]]  # sure; close margin; sure
    outcome = service(tmp_path, engine, FakeBackend(scores)).predict(images, api_key_id=None, request_id="r1")
    assert (outcome.model_name, outcome.model_version, outcome.stored) == ("pets", 7, True)
    assert [p.label for p in outcome.predictions] == ["cat", "cat", "fox"]
    assert [p.needs_review for p in outcome.predictions] == [False, True, False]
    assert outcome.predictions[1].scores == pytest.approx({"cat": 0.5, "dog": 0.45, "fox": 0.05})
    with engine.connect() as connection:
        rows = connection.execute(select(Prediction.id, Prediction.label, Prediction.needs_review)).all()
    assert sorted((label, needs) for _, label, needs in rows) == [("cat", False), ("cat", True), ("fox", False)]
    assert {row.id for row in rows} == {p.id for p in outcome.predictions}
    assert all((tmp_path / "images").rglob(p.image.sha256) for p in outcome.predictions)


def test_invalid_images_never_reach_the_backend_and_backend_errors_pass_through(parts):
    tmp_path, engine = parts
    backend = FakeBackend([[1, 0, 0]])
    with pytest.raises(UploadError) as refused:
        service(tmp_path, engine, backend).predict([NamedImage("x.jpg", b"not an image")], None, "r2")
    assert refused.value.code == "unsupported_format" and "x.jpg" in refused.value.message
    assert backend.calls == 0
    down = FakeBackend([[1, 0, 0]], ServingError("UNAVAILABLE", "model server down"))
    with pytest.raises(ServingError, match="model server down"):
        service(tmp_path, engine, down).predict([NamedImage("a.png", encode(random_pixels(), "PNG"))], None, "r3")


def test_replay_leaves_spool_files_still_being_written_alone(parts):
    """A spool file is written as ``.tmp-NAME.jsonl`` and renamed; pathlib's ``*`` matches dot files, so
    replay used to claim half-written files, and the writer's rename then failed (a 500 during an outage)."""
    from imgclf.gateway.prediction_log import PredictionLog

    tmp_path, engine = parts
    log = PredictionLog(engine, tmp_path / "spool")
    (tmp_path / "spool").mkdir(exist_ok=True)
    being_written = tmp_path / "spool" / ".tmp-0123.jsonl"
    being_written.write_text('{"id": "half-writ')
    claimed_elsewhere = tmp_path / "spool" / ".claimed-99-0456.jsonl"
    claimed_elsewhere.write_text("")
    assert log.pending_files() == 0
    assert log.replay() == 0
    assert being_written.read_text() == '{"id": "half-writ' and claimed_elsewhere.exists()
    log.stop()
