"""Baseline: the orders tables as the release before migrations (d08932f) made them.

Revision ID: orders_0001
Revises:
A frozen copy of pizza/services/orders/tables.py at d08932f: that release made exactly
these with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." orders`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

revision: str = "orders_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("orders",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "orders",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("customer_id", String(100), nullable=False),
        Column("email", String(254), nullable=False),
        Column("items", JSON, nullable=False),
        Column("value_pence", Integer, nullable=False),
        Column("fulfilment", String(16), nullable=False),
        Column("delivery_id", String(100)),
        Column("status", String(16), nullable=False),
        Column("idempotency_key", String(255), unique=True),
        Column("request_hash", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("prepared_at", DateTime(timezone=True)),
        Column("completed_at", DateTime(timezone=True)),
        Column("cancelled_at", DateTime(timezone=True)),
        Index("ix_orders_status_created", "status", "created_at"),
    )

    Table(
        "known_delivery_addresses",
        metadata,
        Column("delivery_id", String(100), primary_key=True),
        Column("customer_id", String(100), nullable=False),
    )

    Table(
        "order_emails",
        metadata,
        Column("message_id", String(64), primary_key=True),
        Column("order_id", String(36), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("status", String(16), nullable=False),
        Column("detail", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
