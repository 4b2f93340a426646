"""Baseline: the orders tables as the release before migrations (d08932f) made them.

Revision ID: orders_0001
Revises:
Frozen copy of pizza/services/orders/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" orders`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("orders",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("value_pence", sa.Integer(), nullable=False),
        sa.Column("fulfilment", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(100)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(255), unique=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prepared_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at"])
    op.create_table(
        "known_delivery_addresses",
        sa.Column("delivery_id", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
    )
    op.create_table(
        "order_emails",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_order_emails_order_id", "order_emails", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_emails")
    op.drop_table("known_delivery_addresses")
    op.drop_table("orders")
