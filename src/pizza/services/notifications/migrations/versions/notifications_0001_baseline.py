"""Baseline: the notifications tables as the release before migrations (d08932f) made them.

Revision ID: notifications_0001
Revises:
Frozen copy of pizza/services/notifications/tables.py at d08932f. A database that release made
(create_all, no version table) is stamped here, not rebuilt. Never edit this file: a change
to the tables is a new revision (`pizza migrate --new "what changed" notifications`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("notifications",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outgoing_emails",
        sa.Column("command_id", sa.String(64), primary_key=True),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("from", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("command_type", sa.String(64), nullable=False),
        sa.Column("command_version", sa.Integer(), nullable=False),
        sa.Column("command_source", sa.String(64), nullable=False),
        sa.Column("command_time", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("traceparent", sa.String(64)),
        sa.Column("reply_to", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_outgoing_emails_due", "outgoing_emails", ["status", "next_attempt_at"])
    op.create_index("ix_outgoing_emails_done", "outgoing_emails", ["done_at"])
    op.create_table(
        "mailbox_received",
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "recipient"),
    )
    op.create_table(
        "mailbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("from", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mailbox_to", "mailbox", ["to"])


def downgrade() -> None:
    op.drop_table("mailbox")
    op.drop_table("mailbox_received")
    op.drop_table("outgoing_emails")
