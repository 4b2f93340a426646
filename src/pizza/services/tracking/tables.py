"""The query side's own table: one JSON document per order (used unless Redis is set).

``customer_id`` and ``confirmed_at`` are copied out of the document only once it is
visible (OrderConfirmed seen), for the by-customer listing; everything else lives in
``document``.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text

metadata = MetaData()

order_views = Table(
    "order_views",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("document", Text, nullable=False),  # OrderView.to_json(), as JSON text
    Column("status", String(32), nullable=False),
    Column("customer_id", String(128)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("order_views_by_customer", "customer_id", "confirmed_at"),
)
