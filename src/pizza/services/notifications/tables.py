"""The notifications service's own tables (no other service reads them)."""

from __future__ import annotations

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

metadata = MetaData()

# One row per SendEmail command (the notifications outbox for SMTP): the handler writes it
# in its transaction, the sender (sender.py) sends it with no transaction open, then marks
# it sent or failed and answers, in a short transaction. Keyed by the command's id, so a
# redelivered command never makes a second row. It keeps what the answer needs: the
# command's metadata (id, correlationId, traceparent, replyTo, time).
outgoing_emails = Table(
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
    Column("status", String(16), nullable=False),  # pending, sent, failed
    Column("attempts", Integer, nullable=False, default=0),  # temporary failures so far
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),  # a sender is on it until then
    Column("claimed_by", String(64)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True)),
    # Whose personal data the email is: the key reference its SendEmail was sealed for
    # (eventing.personal.subject_ref of the customer id), by which CustomerForgotten finds
    # the customer's emails; null for a command sent in the clear.
    Column("data_subject", String(64)),
    Index("ix_outgoing_emails_due", "status", "next_attempt_at"),
    Index("ix_outgoing_emails_done", "done_at"),  # pruning finds old rows through it
    Index("ix_outgoing_emails_subject", "data_subject"),
)

# Which letters the sink already holds, as a mail client knows them: one per recipient
# and Message-ID, so an email sent again after a crash (same Message-ID) shows once.
mailbox_received = Table(
    "mailbox_received",
    metadata,
    Column("message_id", String(255), nullable=False),
    Column("recipient", String(320), nullable=False),
    PrimaryKeyConstraint("message_id", "recipient"),
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
