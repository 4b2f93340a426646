"""Baseline: the delivery tables as the release before migrations (d08932f) made them.

Revision ID: delivery_0001
Revises:
A frozen copy of pizza/services/delivery/tables.py at d08932f: that release made exactly
these with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." delivery`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
)

revision: str = "delivery_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("delivery",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "addresses",
        metadata,
        Column("delivery_id", String(64), primary_key=True),
        Column("customer_id", String(100), nullable=False, index=True),
        Column("line1", String(200), nullable=False),
        Column("line2", String(200)),
        Column("city", String(100), nullable=False),
        Column("postcode", String(10), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )

    Table(
        "jobs",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("delivery_id", String(100)),
        Column("address", JSON),
        Column("stage", String(16), nullable=False),
        Column("driver", String(100)),
        Column("correlation_id", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("ix_jobs_stage_updated", "stage", "updated_at"),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
