"""Why a prediction entered the review queue: uncertain, out_of_distribution, audit (a random sample
of all traffic) or manual (reviewed without being queued). Null: never queued, or logged before this.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("review_reason", sa.String(24), nullable=True))
        batch.create_index("ix_predictions_review_reason", ["review_reason"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_review_reason")
        batch.drop_column("review_reason")
