"""Monitoring columns on predictions: input statistics and the compact embedding.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("input_stats", sa.JSON, nullable=True))
        batch.add_column(sa.Column("embedding", sa.JSON, nullable=True))
    op.create_index("ix_predictions_version_created", "predictions", ["model_name", "model_version", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_predictions_version_created", "predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("embedding")
        batch.drop_column("input_stats")
