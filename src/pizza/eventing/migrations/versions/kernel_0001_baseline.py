"""Baseline: the kernel tables as the release before migrations (d08932f) made them.

Revision ID: kernel_0001
Revises:
A frozen copy of pizza/eventing/storage.py at d08932f: that release made exactly these
with create_all. A database it made (tables, no version table) is adopted: what is
missing of this baseline is added (as that release's start did), then it is stamped
here. Never edit this file; a change to the tables is a new revision (`pizza migrate
--new "..." kernel`).
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
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

revision: str = "kernel_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("kernel",)
depends_on: str | Sequence[str] | None = None


def tables() -> MetaData:
    """The tables of this baseline, as that release declared them."""
    metadata = MetaData()
    Table(
        "eventing_outbox",
        metadata,
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
        metadata,
        Column("consumer", String(128), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("consumer", "message_id"),
    )

    Index("ix_eventing_inbox_handled_at", inbox.c.handled_at)
    return metadata


def upgrade() -> None:
    tables().create_all(op.get_bind())


def downgrade() -> None:
    tables().drop_all(op.get_bind())
