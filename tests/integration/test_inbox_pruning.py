"""Inbox pruning finds old rows through an index and deletes them in bounded batches, so
a big inbox never freezes the service (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy import event as sa_event

from pizza.eventing import inbox as inbox_module
from pizza.eventing.storage import Database, inbox


async def fill(db: Database, old: int, new: int) -> datetime:
    """``old`` rows handled 30 days ago and ``new`` rows handled now; the cut-off between."""
    now = datetime.now(UTC)
    rows = [{"consumer": "c", "message_id": f"old-{i}", "handled_at": now - timedelta(days=30)}
            for i in range(old)]
    rows += [{"consumer": "c", "message_id": f"new-{i}", "handled_at": now}
             for i in range(new)]
    async with db.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(inbox), rows[start:start + 5000])
    return now - timedelta(days=7)


async def test_pruning_removes_old_rows_in_bounded_batches(storage: dict[str, Any]) -> None:
    db = Database("pruned", storage["database_url"], schema=storage["schema"])
    await db.create()
    try:
        cutoff = await fill(db, old=4500, new=300)
        deletes: list[int] = []

        def count_deletes(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE"):
                deletes.append(cursor.rowcount)

        sa_event.listen(db.engine.sync_engine, "after_cursor_execute", count_deletes)
        removed = await inbox_module.prune(db, cutoff, batch=1000)
        sa_event.remove(db.engine.sync_engine, "after_cursor_execute", count_deletes)

        assert removed == 4500
        assert len(deletes) == 5 and max(deletes) <= 1000, deletes
        async with db.read() as conn:
            left = await conn.scalar(select(func.count()).select_from(inbox))
            oldest = await conn.scalar(select(func.min(inbox.c.message_id)))
        assert left == 300 and str(oldest).startswith("new-"), "only old rows go"
        assert await inbox_module.prune(db, cutoff) == 0, "nothing old: nothing done"
    finally:
        await db.close()


async def test_an_existing_inbox_gets_the_index_at_start(storage: dict[str, Any]) -> None:
    db = Database("indexed", storage["database_url"], schema=storage["schema"])
    try:
        async with db.engine.begin() as conn:  # the table as earlier versions made it
            if db.schema is not None:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            old = MetaData()
            Table(inbox.name, old, Column("consumer", String(128), nullable=False),
                  Column("message_id", String(64), nullable=False),
                  Column("handled_at", DateTime(timezone=True), nullable=False),
                  PrimaryKeyConstraint("consumer", "message_id"))
            await conn.run_sync(old.create_all)
        await db.create()
        async with db.engine.connect() as conn:
            indexes = await conn.run_sync(
                lambda sync: inspect(sync).get_indexes(inbox.name, schema=db.schema))
            assert any(ix["column_names"] == ["handled_at"] for ix in indexes), indexes
            if db.is_sqlite:  # and the pruning query uses it instead of a full scan
                plan = await conn.execute(text(
                    "EXPLAIN QUERY PLAN SELECT consumer, message_id FROM eventing_inbox "
                    "WHERE handled_at < '2000-01-01' LIMIT 1000"))
                assert "ix_eventing_inbox_handled_at" in " ".join(
                    str(row[-1]) for row in plan)
    finally:
        await db.close()


async def test_a_replay_forgets_only_its_consumers_rows_in_batches(
        storage: dict[str, Any]) -> None:
    db = Database("replayed", storage["database_url"], schema=storage["schema"])
    await db.create()
    try:
        now = datetime.now(UTC)
        async with db.begin() as conn:
            await conn.execute(insert(inbox), [
                {"consumer": consumer, "message_id": f"m-{i}", "handled_at": now}
                for consumer in ("replayed-a", "kept-b") for i in range(2500)])
        assert await inbox_module.forget(db, ["replayed-a"], batch=1000) == 2500
        async with db.read() as conn:
            left = {row[0]: row[1] for row in await conn.execute(
                select(inbox.c.consumer, func.count()).group_by(inbox.c.consumer))}
        assert left == {"kept-b": 2500}
    finally:
        await db.close()
