"""Which commands' emails went out: never send one command's email twice.

Two records, for two different windows:

* the ``sent_emails`` table, in the handler's transaction with the EmailSent reply: once
  that commits, no redelivery sends again (even one that got past the inbox);
* an in-process memory of emails the SMTP server accepted, kept across rollbacks: when a
  batch rolls back because another email in it failed, or the commit itself fails, the
  retry in this process records the email as sent without sending it again.

What neither covers: the process dies after the SMTP server accepted the email and
before the commit. The command is then redelivered and the email sent a second time,
with the same Message-ID (mailer.message_id_for), so the copies are recognisably one.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from sqlalchemy import select

from pizza.eventing.storage import AsyncConnection, upsert
from pizza.services.notifications.tables import sent_emails

REMEMBERED = 10_000  # far more than one batch can roll back


class _SentHere:
    """Command ids whose email this process handed over, newest last (bounded)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def add(self, command_id: str) -> None:
        self._ids[command_id] = None
        self._ids.move_to_end(command_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


sent_here = _SentHere()


async def was_sent(conn: AsyncConnection, command_id: str) -> bool:
    found = await conn.scalar(
        select(sent_emails.c.command_id).where(sent_emails.c.command_id == command_id))
    return found is not None


async def record(conn: AsyncConnection, command_id: str, to: str, subject: str,
                 message_id: str) -> None:
    await conn.execute(
        upsert(conn, sent_emails)
        .values(command_id=command_id, to=to, subject=subject, message_id=message_id,
                sent_at=datetime.now(UTC))
        .on_conflict_do_nothing())
