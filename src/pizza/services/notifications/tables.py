"""The notifications service's own tables (no other service reads them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per SendEmail command whose email the SMTP server accepted, written in the
# handler's transaction with the EmailSent reply: a command found here is never sent
# again, even if a redelivery gets past the inbox.
sent_emails = Table(
    "sent_emails",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("to", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

# What the development SMTP sink received (mailbox.py): one row per recipient, so
# GET /api/mailbox?to=... is one indexed lookup.
mailbox = Table(
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
