"""Baseline: the kernel tables as the release before migrations (d08932f) made them.

Revision ID: kernel_0001
Revises:
Frozen copy of pizza/eventing/storage.py at d08932f (outbox, inbox and the inbox's
pruning index). A database that release made is stamped here, not rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kernel_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("kernel",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eventing_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "eventing_inbox",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )
    op.create_index("ix_eventing_inbox_handled_at", "eventing_inbox", ["handled_at"])


def downgrade() -> None:
    op.drop_index("ix_eventing_inbox_handled_at", table_name="eventing_inbox")
    op.drop_table("eventing_inbox")
    op.drop_table("eventing_outbox")
