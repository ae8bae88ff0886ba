"""Migration 0004: the out-of-distribution columns join an existing prediction log (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import inspect, select

from imgclf.storage.database import create_database_engine, migrate
from imgclf.storage.models import Prediction, new_id, utcnow
from imgclf.storage.predictions import insert_predictions


def row(**extra):  # type: ignore[no-untyped-def]
    values = dict(
        id=new_id(), created_at=utcnow(), request_id="r", api_key_id=None, image_sha256="0" * 64, image_bytes=10,
        image_format="JPEG", width=4, height=4, model_name="m", model_version=1, label="a", confidence=0.9,
        scores={"a": 0.9, "b": 0.1}, threshold=None, latency_ms=1.0, needs_review=False,
    )  # fmt: skip
    values.update(extra)
    return values


def test_an_existing_log_gains_nullable_ood_columns(database_url):
    engine = create_database_engine(database_url)
    try:
        migrate(engine, "0003")  # the schema before this change, with a prediction in it
        assert "ood_score" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
        old = row()
        insert_predictions(engine, [old])

        migrate(engine)
        columns = {c["name"]: c for c in inspect(engine).get_columns("predictions")}
        assert columns["ood_score"]["nullable"] and columns["out_of_distribution"]["nullable"]
        new = row(ood_score=2.5, out_of_distribution=True, needs_review=True)
        insert_predictions(engine, [new])
        with engine.connect() as connection:
            stored = {
                r.id: (r.ood_score, r.out_of_distribution)
                for r in connection.execute(select(Prediction.id, Prediction.ood_score, Prediction.out_of_distribution))
            }
        assert stored == {old["id"]: (None, None), new["id"]: (2.5, True)}
    finally:
        engine.dispose()
