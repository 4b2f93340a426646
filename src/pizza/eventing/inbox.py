"""The inbox: which messages a consumer has handled, so a redelivery has no second effect.

JetStream delivers at least once (an ack can be lost, or arrive after the broker already
redelivered), so acks alone are not exactly-once. The inbox row for (consumer, message id)
is written in the handler's own transaction: if the handler's writes committed, so did
the row, and a second delivery finds it and does nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from pizza.eventing import inline_sqlite
from pizza.eventing.storage import AsyncConnection, Database, inbox

# Rows forgotten per transaction: short enough that no writer waits long for SQLite's
# write lock, and that the event loop (which runs SQLite's statements) stays free.
PRUNE_BATCH = 1000


def _claim_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING message_id, built once per dialect and
    run with a list of rows (SQLAlchemy's insertmanyvalues batches them into one
    statement). Building it per batch with literal values cost 40% of a consumer's CPU."""
    statement = _statements.get(dialect)
    if statement is None:
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = (module.insert(inbox).on_conflict_do_nothing()
                     .returning(inbox.c.message_id))
        _statements[dialect] = statement
    return statement


_statements: dict[str, Any] = {}


async def claim(conn: AsyncConnection, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record the messages as handled; return the ids not handled before."""
    if not message_ids:
        return set()
    now = datetime.now(UTC)
    wanted = list(dict.fromkeys(message_ids))
    if conn.dialect.name == "sqlite":
        direct = await inline_sqlite.driver(conn)
        if direct is not None:
            return _claim_sqlite(direct, consumer, wanted, _stored_time(conn.dialect)(now))
    rows = [{"consumer": consumer, "message_id": mid, "handled_at": now} for mid in wanted]
    result = await conn.execute(_claim_statement(conn.dialect.name), rows)
    return {row[0] for row in result}


# Ids per SELECT: far below SQLite's limit on a statement's parameters (32766).
_LOOKUP_CHUNK = 500


async def seen(db: Database, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Which of these messages the consumer has handled already: a look taking no write
    lock, for work to skip before the transaction (a call to someone else that a
    redelivery need not make again). ``claim`` stays the judge of what is new."""
    wanted = list(dict.fromkeys(message_ids))
    found: set[str] = set()
    async with db.read() as conn:
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            part = wanted[start:start + _LOOKUP_CHUNK]
            found.update(await conn.scalars(
                select(inbox.c.message_id).where(inbox.c.consumer == consumer,
                                                 inbox.c.message_id.in_(part))))
    return found


def _claim_sqlite(db: sqlite3.Connection, consumer: str, wanted: list[str],
                  handled_at: str) -> set[str]:
    """SQLite, straight on its own connection: which ids are there already (one indexed
    SELECT), then the others inserted with one prepared statement. Through SQLAlchemy the
    same claim cost twice the CPU (its statement and row layers, a datetime converted per
    row) and was the largest part of a consumer's time after the broker's.

    The caller's transaction holds SQLite's write lock (``Database.begin`` says BEGIN
    IMMEDIATE), so nothing can add a row between the look and the insert. Should one
    appear anyway, the plain INSERT fails and the batch is retried: never is a message
    handled twice."""
    found: set[str] = set()
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        part = wanted[start:start + _LOOKUP_CHUNK]
        found.update(row[0] for row in db.execute(
            f"SELECT message_id FROM {inbox.name} WHERE consumer = ? "
            f"AND message_id IN ({','.join('?' * len(part))})", (consumer, *part)))
    new = [mid for mid in wanted if mid not in found]
    if new:
        db.executemany(
            f"INSERT INTO {inbox.name} (consumer, message_id, handled_at) VALUES (?, ?, ?)",
            [(consumer, mid, handled_at) for mid in new])
    return set(new)


def _stored_time(dialect: Any) -> Any:
    """How SQLAlchemy writes ``handled_at`` on this dialect (the same text, so pruning's
    comparisons hold), made once."""
    convert = _time_converters.get(dialect.name)
    if convert is None:
        column = inbox.c.handled_at.type.dialect_impl(dialect)
        convert = column.bind_processor(dialect) or (lambda value: value)
        _time_converters[dialect.name] = convert
    return convert


_time_converters: dict[str, Any] = {}


async def prune(db: Database, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
    """Forget handled messages older than any redelivery or replay we accept.

    The old rows are found through the ``handled_at`` index (when nothing is old, that is
    one look at the index) and deleted ``batch`` at a time, one transaction each, with a
    turn of the event loop between: two million rows never freeze the service.
    """
    return await _delete_in_batches(db, inbox.c.handled_at < older_than, batch)


async def forget(db: Database, consumers: Sequence[str], batch: int = PRUNE_BATCH) -> int:
    """Forget everything these consumers handled (a replay starts over), in batches."""
    return await _delete_in_batches(db, inbox.c.consumer.in_(list(consumers)), batch)


async def _delete_in_batches(db: Database, condition: Any, batch: int) -> int:
    removed = 0
    while True:
        async with db.begin() as conn:
            some = select(inbox.c.consumer, inbox.c.message_id).where(condition).limit(batch)
            result = await conn.execute(delete(inbox).where(
                tuple_(inbox.c.consumer, inbox.c.message_id).in_(some)))
        count = int(getattr(result, "rowcount", 0) or 0)
        removed += count
        if count < batch:
            return removed
        await asyncio.sleep(0)  # let HTTP, consumers and acks run between batches
