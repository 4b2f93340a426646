"""Baseline: the kitchen tables as the release before migrations (d08932f) made them.

Revision ID: kitchen_0001
Revises:
Frozen copy of pizza/services/kitchen/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" kitchen`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kitchen_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("kitchen",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("fulfilment", sa.String(16)),
        sa.Column("delivery_id", sa.String(100)),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tickets_stage_updated", "tickets", ["stage", "updated_at"])


def downgrade() -> None:
    op.drop_table("tickets")
