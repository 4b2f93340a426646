"""The inbox: which messages a consumer has handled, so a redelivery has no second effect.

JetStream delivers at least once (an ack can be lost, or arrive after the broker already
redelivered), so acks alone are not exactly-once. The inbox row for (consumer, message id)
is written in the handler's own transaction: if the handler's writes committed, so did
the row, and a second delivery finds it and does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

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
    """Record the messages as handled; return the ids not handled before (one statement)."""
    if not message_ids:
        return set()
    now = datetime.now(UTC)
    rows = [{"consumer": consumer, "message_id": mid, "handled_at": now}
            for mid in dict.fromkeys(message_ids)]
    result = await conn.execute(_claim_statement(conn.dialect.name), rows)
    return {row[0] for row in result}


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
