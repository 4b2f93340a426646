"""Baseline: the loyalty tables as the release before migrations (d08932f) made them.

Revision ID: loyalty_0001
Revises:
Frozen copy of pizza/services/loyalty/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" loyalty`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "loyalty_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("loyalty",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_entries_customer", "entries", ["customer_id"])
    op.create_table(
        "balances",
        sa.Column("customer_id", sa.String(100), primary_key=True),
        sa.Column("points", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("balances")
    op.drop_table("entries")
