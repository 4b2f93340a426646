"""Baseline: the tracking tables as the release before migrations (d08932f) made them.

Revision ID: tracking_0001
Revises:
Frozen copy of pizza/services/tracking/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" tracking`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tracking_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("tracking",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_views",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(128)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("order_views_by_customer", "order_views", ["customer_id", "confirmed_at"])


def downgrade() -> None:
    op.drop_table("order_views")
