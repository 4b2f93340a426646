"""The loyalty service's own tables (no other service reads them)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

# One row per completed order that earned points: the order id as primary key is what
# makes "one set of points per order" hold even for a redelivery that got past the
# inbox. With the SaaS backend it is our record of what we asked them to credit.
entries = Table(
    "entries",
    metadata,
    Column("order_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False),
    Column("points", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_entries_customer", "customer_id"),
)

# The running total per customer, kept in the same transaction as each entry: reads are
# one row, and on PostgreSQL the row lock orders concurrent credits, so every published
# balance is exact.
balances = Table(
    "balances",
    metadata,
    Column("customer_id", String(100), primary_key=True),
    Column("points", Integer, nullable=False),
)
