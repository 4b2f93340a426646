"""Baseline: the tracking tables as the release before migrations (d08932f) made them.

Revision ID: tracking_0001
Revises:
A frozen copy of pizza/services/tracking/tables.py at d08932f: that release made exactly
these with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." tracking`).
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
    Text,
)

revision: str = "tracking_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("tracking",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "order_views",
        metadata,
        Column("order_id", String(64), primary_key=True),
        Column("document", Text, nullable=False),
        Column("status", String(32), nullable=False),
        Column("customer_id", String(128)),
        Column("confirmed_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("order_views_by_customer", "customer_id", "confirmed_at"),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
