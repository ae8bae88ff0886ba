"""Engines, sessions and migrations for SQLite (default) and PostgreSQL.

Example:
    >>> engine = connect("sqlite:///imgclf.db")     # migrated to the latest schema
    >>> with session_scope(engine) as session:
    ...     session.add(ApiKey(...))
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"


def create_database_engine(url: str, timeout: float | None = None) -> Engine:
    """An engine with sensible settings: WAL and a busy timeout for SQLite, pre-ping for servers.

    ``timeout`` (seconds) bounds connecting to a database server, waiting for a pooled connection
    and each statement (PostgreSQL's ``statement_timeout``), so a slow server fails requests instead
    of holding them.
    """
    if url.startswith("sqlite"):
        # A local file does not hang like a server: SQLite keeps its 30 s busy timeout (waits for a writer).
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if timeout is None:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    connect_args = {"connect_timeout": max(1, round(timeout)), "options": f"-c statement_timeout={int(timeout * 1000)}"}
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=timeout, connect_args=connect_args
    )


MIGRATION_LOCK_ID = 0x696D67636C66  # "imgclf": PostgreSQL advisory lock held while migrating


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent).

    Every gateway worker and replica migrates when it starts; on PostgreSQL they take turns under
    a transaction-scoped advisory lock, so replicas started together never race on the same DDL.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no per-start chatter in service logs
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def connect(url: str) -> Engine:
    engine = create_database_engine(url)
    migrate(engine)
    return engine


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
