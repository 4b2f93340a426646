"""The orders service's own tables (no other service reads them)."""

from __future__ import annotations

from typing import Any

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

from pizza.eventing.storage import AsyncConnection, upsert

metadata = MetaData()

# Status moves forward only: confirmed -> prepared -> completed, or confirmed -> cancelled;
# a delivery order whose id orders has not heard of yet starts awaiting-address, then is
# confirmed or cancelled (awaiting.py).
orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(100), nullable=False),
    Column("email", String(254), nullable=False),
    Column("items", JSON, nullable=False),  # [{menuItemId, name, quantity, unitPricePence}]
    Column("value_pence", Integer, nullable=False),
    Column("fulfilment", String(16), nullable=False),
    Column("delivery_id", String(100)),
    Column("status", String(16), nullable=False),
    # UNIQUE: two concurrent requests with one key cannot both store an order.
    Column("idempotency_key", String(255), unique=True),
    Column("request_hash", String(64), nullable=False),  # tells a reused key's body apart
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prepared_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    # The deadline job looks for orders awaiting their address, oldest first.
    Index("ix_orders_status_created", "status", "created_at"),
)

# Learnt from DeliveryAddressRegistered: which delivery ids exist, and whose they are.
known_delivery_addresses = Table(
    "known_delivery_addresses",
    metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False),
)

# One row per SendEmail command, written when it is sent; its answer fills in the status.
order_emails = Table(
    "order_emails",
    metadata,
    Column("message_id", String(64), primary_key=True),  # metadata.id of the command
    Column("order_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # receipt | thanks
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("detail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


async def insert_if_absent(conn: AsyncConnection, table: Table, values: dict[str, Any],
                           key: list[str]) -> bool:
    """Insert a row unless one with the same key exists; True if it was inserted.

    ``ON CONFLICT DO NOTHING`` in the dialect at hand, so a redelivered or concurrent
    message never fails on a duplicate.
    """
    statement = upsert(conn, table).values(**values).on_conflict_do_nothing(
        index_elements=key)
    result = await conn.execute(statement)
    return bool(result.rowcount)
