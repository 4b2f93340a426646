"""The query side's own table: one JSON document per order (used unless Redis is set).

``customer_id`` and ``confirmed_at`` are copied out of the document only once it is
visible (OrderConfirmed seen), for the by-customer listing; everything else lives in
``document``.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

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

# The journal (journal.py): the metadata of every message seen on the bus, never its data
# (which may be personal). Every string is bounded as the envelope bounds it. ``key`` is
# the message id (a dead letter's: "dead:<consumer>:<id>"), unique: a redelivery is one row.
journal = Table(
    "journal",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # order of arrival
    Column("key", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # event, command, reply, dead-letter
    Column("message_id", String(64)),
    Column("type", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", String(64), nullable=False),
    Column("time", String(40), nullable=False),  # metadata.time, RFC 3339 UTC with ms
    Column("correlation_id", String(64)),
    Column("causation_id", String(64)),
    Column("subject", String(255), nullable=False),
    Column("dead_reason", String(32)),  # dead letters: why (malformed, handler-failed...)
    Column("dead_consumer", String(128)),  # dead letters: the queue that gave up
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("journal_by_correlation", "correlation_id", "seq"),
    Index("journal_by_type", "type", "seq"),
    Index("journal_by_received_at", "received_at"),
)
