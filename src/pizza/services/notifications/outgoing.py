"""The emails waiting to go out: the ``outgoing_emails`` rows, from written to done.

The SendEmail handler writes a row (``record``) in its own transaction; the sender claims
due rows (``claim``), sends them with no transaction open, and ends each in a short
transaction of its own (``finish``) or puts it back for later (``later``).

Claims let several notifications processes share one PostgreSQL database without sending
one row twice at once: a claim is an UPDATE of rows picked ``FOR UPDATE SKIP LOCKED``, so
two senders never pick the same row, and it lasts ``CLAIM_SECONDS``, after which a row
whose sender died is due again. SQLite ignores ``FOR UPDATE``: there one process owns the
file (storage.Database refuses a second), so its claims at start are stale and released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.sql.elements import BindParameter

from pizza.contracts.notifications import SendEmailV1
from pizza.eventing.envelope import Metadata
from pizza.eventing.storage import AsyncConnection, Database, once_per_dialect, upsert
from pizza.services.notifications.tables import outgoing_emails as rows

KEPT = timedelta(days=7)  # done rows are kept this long: the inbox's own retention
PRUNE_BATCH = 1000
CLAIM_SECONDS = 30.0  # longer than one email's SMTP exchange can take (mailer timeouts)
PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class OutgoingEmail:
    """One claimed row: the email, and the command it answers."""

    command: Metadata
    to: str
    sender: str
    subject: str
    body: str
    message_id: str
    attempts: int

    @classmethod
    def of(cls, row: Any) -> OutgoingEmail:
        command = Metadata(type=row["command_type"], version=row["command_version"],
                           source=row["command_source"], id=row["command_id"],
                           time=row["command_time"], correlation_id=row["correlation_id"],
                           traceparent=row["traceparent"], reply_to=row["reply_to"])
        return cls(command=command, to=row["to"], sender=row["from"],
                   subject=row["subject"], body=row["body"], message_id=row["message_id"],
                   attempts=row["attempts"])

    def as_command(self) -> SendEmailV1:
        return SendEmailV1.model_validate({"to": self.to, "from": self.sender,
                                           "subject": self.subject, "body": self.body})


def _now() -> datetime:
    return datetime.now(UTC)


async def record(conn: AsyncConnection, command: SendEmailV1, meta: Metadata,
                 message_id: str, *, failed: str | None = None,
                 data_subject: str | None = None) -> bool:
    """Write the email a command asks for (``failed``: already known unsendable, and why;
    ``data_subject``: whose personal data it is). False if this command's row exists
    already (a redelivery): nothing to do then."""
    now = _now()
    inserted = await conn.scalar(_RECORD(conn), {
        "command_id": meta.id, "to": command.to, "from": command.sender,
        "subject": command.subject, "body": command.body, "message_id": message_id,
        "command_type": meta.type, "command_version": meta.version,
        "command_source": meta.source[:64], "command_time": meta.time[:64],
        "correlation_id": meta.correlation_id, "traceparent": meta.traceparent,
        "reply_to": meta.reply_to, "status": PENDING if failed is None else FAILED,
        "attempts": 0, "next_attempt_at": now, "last_error": failed, "created_at": now,
        "done_at": None if failed is None else now, "data_subject": data_subject})
    return inserted is not None


_RECORD = once_per_dialect(lambda conn: upsert(conn, rows).on_conflict_do_nothing()
                           .returning(rows.c.command_id))


def _due(now: datetime | BindParameter[Any]) -> Any:
    return and_(rows.c.status == PENDING, rows.c.next_attempt_at <= now,
                or_(rows.c.claimed_until.is_(None), rows.c.claimed_until < now))


async def anything_due(db: Database) -> bool:
    """A cheap look, taking no write lock: is there a row to claim now?"""
    async with db.read() as conn:
        found = await conn.scalar(_ANY_DUE, {"now": _now()})
    return found is not None


_ANY_DUE = select(rows.c.command_id).where(
    _due(bindparam("now", type_=rows.c.next_attempt_at.type))).limit(1)


async def claim(db: Database, claimant: str, limit: int) -> list[OutgoingEmail]:
    """Take up to ``limit`` due rows, oldest first, for ``CLAIM_SECONDS``."""
    now = _now()
    picked = (select(rows.c.command_id).where(_due(now))
              .order_by(rows.c.created_at, rows.c.command_id).limit(limit)
              .with_for_update(skip_locked=True))
    async with db.begin() as conn:
        claimed = (await conn.execute(
            update(rows).where(rows.c.command_id.in_(picked.scalar_subquery()))
            .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                    claimed_by=claimant)
            .returning(*rows.c))).mappings().all()
    emails = [OutgoingEmail.of(row) for row in claimed]
    return sorted(emails, key=lambda email: (email.command.time, email.command.id))


async def finish(conn: AsyncConnection, email: OutgoingEmail, *,
                 error: str | None = None) -> bool:
    """Mark a claimed row sent (or failed, with ``error``). False if it was already done
    (another sender finished it after our claim ran out): then it must not be answered."""
    done = await conn.execute(_FINISH, {
        "id": email.command.id, "status": SENT if error is None else FAILED,
        "last_error": error, "done_at": _now(), "claimed_until": None, "claimed_by": None})
    return bool(done.rowcount)


_FINISH = update(rows).where(rows.c.command_id == bindparam("id"), rows.c.status == PENDING)


async def later(db: Database, email: OutgoingEmail, delay: float, *,
                error: str | None, spent: bool = True) -> None:
    """Put a claimed row back, due in ``delay`` seconds. ``spent``: a temporary failure
    of this email (it counts for its backoff); else it was not even tried."""
    async with db.begin() as conn:
        await conn.execute(
            update(rows).where(rows.c.command_id == email.command.id,
                               rows.c.status == PENDING)
            .values(next_attempt_at=_now() + timedelta(seconds=delay),
                    attempts=rows.c.attempts + (1 if spent else 0),
                    last_error=error if spent else rows.c.last_error,
                    claimed_until=None, claimed_by=None))


async def release(db: Database, claimant: str | None = None) -> None:
    """Give back the claims of ``claimant`` (a sender stopping), or all (SQLite's start)."""
    mine = rows.c.claimed_by == claimant if claimant is not None else rows.c.claimed_by.isnot(None)
    async with db.begin() as conn:
        await conn.execute(update(rows).where(rows.c.status == PENDING, mine)
                           .values(claimed_until=None, claimed_by=None))


async def pending(db: Database) -> int:
    """How many emails are still to send (due or not)."""
    async with db.read() as conn:
        return int(await conn.scalar(
            select(func.count()).select_from(rows).where(rows.c.status == PENDING)) or 0)


async def prune(db: Database, kept: timedelta = KEPT, batch: int = PRUNE_BATCH) -> int:
    """Forget emails done longer than ``kept`` ago (a redelivery of their command that
    old would be past the inbox too), ``batch`` rows per short transaction."""
    older_than, removed = _now() - kept, 0
    while True:
        some = select(rows.c.command_id).where(rows.c.done_at < older_than).limit(batch)
        async with db.begin() as conn:
            result = await conn.execute(
                delete(rows).where(rows.c.command_id.in_(some.scalar_subquery())))
        removed += int(result.rowcount or 0)
        if int(result.rowcount or 0) < batch:
            return removed
