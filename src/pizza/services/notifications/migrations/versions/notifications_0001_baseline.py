"""Baseline: the notifications tables as the release before migrations (d08932f) made them.

Revision ID: notifications_0001
Revises:
A frozen copy of pizza/services/notifications/tables.py at d08932f: that release made
exactly these with create_all. A database it made (tables, no version table) is adopted:
what is missing of this baseline is added (as that release's start did), then it is
stamped here. Never edit this file; a change to the tables is a new revision (`pizza
migrate --new "..." notifications`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

revision: str = "notifications_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("notifications",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "outgoing_emails",
        metadata,
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

    Table(
        "mailbox_received",
        metadata,
        Column("message_id", String(255), nullable=False),
        Column("recipient", String(320), nullable=False),
        PrimaryKeyConstraint("message_id", "recipient"),
    )

    Table(
        "mailbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("to", String(320), nullable=False),
        Column("from", String(320), nullable=False),
        Column("subject", Text, nullable=False),
        Column("body", Text, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Index("ix_mailbox_to", "to"),
    )
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
