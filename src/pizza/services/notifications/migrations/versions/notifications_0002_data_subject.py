"""Whose personal data each outgoing email is: outgoing_emails.data_subject.

Revision ID: notifications_0002
Revises: notifications_0001

The key reference (eventing.personal.subject_ref) a SendEmail's personal fields were
sealed for, so that CustomerForgotten finds and erases that customer's emails. Rows made
before it stay null: their commands were sent in the clear, before sealing existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0002"
down_revision: str | Sequence[str] | None = "notifications_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outgoing_emails") as table:
        table.add_column(sa.Column("data_subject", sa.String(64)))
        table.create_index("ix_outgoing_emails_subject", ["data_subject"])


def downgrade() -> None:
    with op.batch_alter_table("outgoing_emails") as table:
        table.drop_index("ix_outgoing_emails_subject")
        table.drop_column("data_subject")
