"""The database tables, as SQLAlchemy 2 typed ORM classes.

Works on SQLite (the embedded default) and PostgreSQL; schema changes go through Alembic
(``imgclf/storage/migrations``), never ``create_all`` in production.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` identifies it in lists and logs."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # comma-separated: predict,review,admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Prediction(Base):
    """One classified image: what came in, what the model said, and what a reviewer said."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_created_at", "created_at"),
        Index("ix_predictions_review", "needs_review", "review_label", "confidence"),
        Index("ix_predictions_version_created", "model_name", "model_version", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    request_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_bytes: Mapped[int] = mapped_column(Integer)
    image_format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer, index=True)
    label: Mapped[str] = mapped_column(String(200), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict] = mapped_column(JSON)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    # Monitoring (imgclf.monitoring): input statistics of the upload and the export's embedding_projection.
    # Why this version answered: stable, canary, latest, requested (version or label asked for), shadow.
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    input_stats: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    embedding: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # Distance from the reference profile's embeddings over its calibrated threshold (imgclf.monitoring.ood),
    # and whether it passed the gateway's limit; None: the export has no calibrated profile.
    ood_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    out_of_distribution: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Why it entered the review queue: uncertain, out_of_distribution, audit (random sample), manual.
    review_reason: Mapped[str | None] = mapped_column(String(24), nullable=True, index=True)
    review_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
