"""Baseline: the pickup tables as the release before migrations (d08932f) made them.

Revision ID: pickup_0001
Revises:
A frozen copy of pizza/services/pickup/tables.py at d08932f: that release made exactly
these with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." pickup`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
)

revision: str = "pickup_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("pickup",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "counter",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("stage", String(16), nullable=False),
        Column("correlation_id", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("ix_counter_stage_updated", "stage", "updated_at"),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
