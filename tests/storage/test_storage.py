"""The prediction log and key tables on SQLite and PostgreSQL, and the image store."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from imgclf.storage.database import connect, migrate, session_scope, table_names
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import ApiKey, Prediction


def test_migrations_create_the_schema_and_are_idempotent(database_url):
    engine = connect(database_url)
    assert {"alembic_version", "api_keys", "predictions"} <= set(table_names(engine))
    migrate(engine)  # a second run changes nothing and does not fail
    engine.dispose()


def test_predictions_round_trip(database_url):
    engine = connect(database_url)
    with session_scope(engine) as session:
        key = ApiKey(name="ci", prefix="ik_abc", key_hash="0" * 64, scopes="predict,review")
        session.add(key)
        session.flush()
        session.add(
            Prediction(
                request_id="req-1", api_key_id=key.id, image_sha256="a" * 64, image_bytes=1234, image_format="JPEG",
                width=500, height=375, model_name="cats_dogs", model_version=3, label="cats", confidence=0.61,
                scores={"cats": 0.61, "dogs": 0.39}, threshold=0.5, latency_ms=12.5, needs_review=True,
            )
        )  # fmt: skip
    with session_scope(engine) as session:
        stored = session.scalars(select(Prediction).where(Prediction.needs_review)).one()
        assert stored.scores == {"cats": 0.61, "dogs": 0.39}
        assert stored.created_at.replace(tzinfo=stored.created_at.tzinfo or UTC) <= datetime.now(UTC)
        stored.review_label, stored.reviewer = "dogs", "ana"
    with session_scope(engine) as session:
        assert session.scalars(select(Prediction.review_label)).one() == "dogs"
    engine.dispose()


def test_a_failed_transaction_writes_nothing(database_url):
    engine = connect(database_url)
    try:
        with session_scope(engine) as session:
            session.add(ApiKey(name="a", prefix="ik_a", key_hash="1" * 64, scopes="predict"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with session_scope(engine) as session:
        assert session.scalars(select(ApiKey)).all() == []
    engine.dispose()


def test_image_store_is_content_addressed_and_prunes_by_age(tmp_path):
    store = ImageStore(tmp_path / "images")
    first = store.put(b"image one")
    assert first == hashlib.sha256(b"image one").hexdigest()
    assert store.put(b"image one") == first  # stored once
    assert store.path(first).read_bytes() == b"image one"
    old = store.put(b"image two")
    week_ago = time.time() - 7 * 86400
    os.utime(store.path(old), (week_ago, week_ago))
    assert store.prune(older_than_days=3) == 1
    assert store.contains(first) and not store.contains(old)
    assert not list((tmp_path / "images").rglob(".tmp-*"))


def test_replicas_starting_together_migrate_one_at_a_time(postgres_url):
    """Gateway workers and replicas all migrate at start; on PostgreSQL none of them may fail."""
    failures: list[BaseException] = []

    def start() -> None:
        try:
            connect(postgres_url).dispose()
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert {"alembic_version", "api_keys", "predictions"} <= set(table_names(connect(postgres_url)))
