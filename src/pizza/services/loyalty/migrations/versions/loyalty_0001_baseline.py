"""Baseline: the loyalty tables as the release before migrations (d08932f) made them.

Revision ID: loyalty_0001
Revises:
A frozen copy of pizza/services/loyalty/tables.py at d08932f: that release made exactly
these with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." loyalty`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

revision: str = "loyalty_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("loyalty",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "entries",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("customer_id", String(100), nullable=False),
        Column("points", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_entries_customer", "customer_id"),
    )

    Table(
        "balances",
        metadata,
        Column("customer_id", String(100), primary_key=True),
        Column("points", Integer, nullable=False),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
