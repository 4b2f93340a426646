"""The schema of the last release before migrations (git d08932f), frozen for the tests.

Copied from that release's tables.py files and pizza/eventing/storage.py (comments left
out). Its databases were made with ``create_all`` from exactly these tables; never edit
this file to follow a change of today's tables: it is what deployed databases hold.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

kernel = MetaData()

outbox = Table(
    "eventing_outbox",
    kernel,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("traceparent", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

inbox = Table(
    "eventing_inbox",
    kernel,
    Column("consumer", String(128), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("consumer", "message_id"),
)

inbox_handled_at = Index("ix_eventing_inbox_handled_at", inbox.c.handled_at)


orders = MetaData()

orders_orders = Table(
    "orders",
    orders,
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

orders_known_delivery_addresses = Table(
    "known_delivery_addresses",
    orders,
    Column("delivery_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False),
)

orders_order_emails = Table(
    "order_emails",
    orders,
    Column("message_id", String(64), primary_key=True),
    Column("order_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


kitchen = MetaData()

kitchen_tickets = Table(
    "tickets",
    kitchen,
    Column("order_id", String(100), primary_key=True),
    Column("items", JSON, nullable=False),
    Column("fulfilment", String(16)),
    Column("delivery_id", String(100)),
    Column("stage", String(16), nullable=False),
    Column("correlation_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_tickets_stage_updated", "stage", "updated_at"),
)


delivery = MetaData()

delivery_addresses = Table(
    "addresses",
    delivery,
    Column("delivery_id", String(64), primary_key=True),
    Column("customer_id", String(100), nullable=False, index=True),
    Column("line1", String(200), nullable=False),
    Column("line2", String(200)),
    Column("city", String(100), nullable=False),
    Column("postcode", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

delivery_jobs = Table(
    "jobs",
    delivery,
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


pickup = MetaData()

pickup_counter = Table(
    "counter",
    pickup,
    Column("order_id", String(100), primary_key=True),
    Column("stage", String(16), nullable=False),
    Column("correlation_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_counter_stage_updated", "stage", "updated_at"),
)


loyalty = MetaData()

loyalty_entries = Table(
    "entries",
    loyalty,
    Column("order_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False),
    Column("points", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_entries_customer", "customer_id"),
)

loyalty_balances = Table(
    "balances",
    loyalty,
    Column("customer_id", String(100), primary_key=True),
    Column("points", Integer, nullable=False),
)


notifications = MetaData()

notifications_outgoing_emails = Table(
    "outgoing_emails",
    notifications,
    Column("command_id", String(64), primary_key=True),
    Column("to", String(320), nullable=False),
    Column("from", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("command_type", String(64), nullable=False),
    Column("command_version", Integer, nullable=False),
    Column("command_source", String(64), nullable=False),
    Column("command_time", String(64), nullable=False),
    Column("correlation_id", String(64)),
    Column("traceparent", String(64)),
    Column("reply_to", String(255)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),
    Column("claimed_by", String(64)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True)),
    Index("ix_outgoing_emails_due", "status", "next_attempt_at"),
    Index("ix_outgoing_emails_done", "done_at"),
)

notifications_mailbox_received = Table(
    "mailbox_received",
    notifications,
    Column("message_id", String(255), nullable=False),
    Column("recipient", String(320), nullable=False),
    PrimaryKeyConstraint("message_id", "recipient"),
)

notifications_mailbox = Table(
    "mailbox",
    notifications,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("to", String(320), nullable=False),
    Column("from", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_mailbox_to", "to"),
)


tracking = MetaData()

tracking_order_views = Table(
    "order_views",
    tracking,
    Column("order_id", String(64), primary_key=True),
    Column("document", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("customer_id", String(128)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("order_views_by_customer", "customer_id", "confirmed_at"),
)


SERVICES = {"orders": orders, "kitchen": kitchen, "delivery": delivery, "pickup": pickup,
            "loyalty": loyalty, "notifications": notifications, "tracking": tracking}
