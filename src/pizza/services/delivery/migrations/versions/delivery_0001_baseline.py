"""Baseline: the delivery tables as the release before migrations (d08932f) made them.

Revision ID: delivery_0001
Revises:
Frozen copy of pizza/services/delivery/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" delivery`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "delivery_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("delivery",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("line1", sa.String(200), nullable=False),
        sa.Column("line2", sa.String(200)),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("postcode", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_addresses_customer_id", "addresses", ["customer_id"])
    op.create_table(
        "jobs",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("delivery_id", sa.String(100)),
        sa.Column("address", sa.JSON()),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("driver", sa.String(100)),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_stage_updated", "jobs", ["stage", "updated_at"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("addresses")
