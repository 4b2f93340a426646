"""The inbox claim says which messages are new, once each, on SQLite and PostgreSQL alike;
its rows are the ones pruning finds (SQLite's claim runs on the driver directly)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from pizza.eventing import inbox as inbox_module
from pizza.eventing.storage import Database, inbox


async def test_a_message_is_new_once_per_consumer(storage: dict[str, Any]) -> None:
    db = Database("claims", storage["database_url"], schema=storage["schema"])
    await db.create()
    try:
        async with db.begin() as conn:
            first = await inbox_module.claim(conn, "kitchen-orders", ["a", "b", "a"])
        async with db.begin() as conn:
            again = await inbox_module.claim(conn, "kitchen-orders", ["b", "c"])
            other = await inbox_module.claim(conn, "billing-orders", ["a"])
        ids = [f"m-{i}" for i in range(1200)]  # more than one look-up's worth of ids
        async with db.begin() as conn:
            many = await inbox_module.claim(conn, "kitchen-orders", ids)
        async with db.begin() as conn:
            repeated = await inbox_module.claim(conn, "kitchen-orders", [*ids[::-1], "d"])
        assert first == {"a", "b"}, "a duplicate inside one batch counts once"
        assert again == {"c"}, "what was handled before is not new"
        assert other == {"a"}, "each consumer has its own inbox"
        assert many == set(ids) and repeated == {"d"}
        async with db.read() as conn:
            rows = await conn.scalar(select(func.count()).select_from(inbox))
        assert rows == 3 + 1 + 1200 + 1
    finally:
        await db.close()


async def test_a_rolled_back_claim_leaves_the_messages_new(storage: dict[str, Any]) -> None:
    db = Database("claims", storage["database_url"], schema=storage["schema"])
    await db.create()
    try:
        try:
            async with db.begin() as conn:
                assert await inbox_module.claim(conn, "q", ["a"]) == {"a"}
                raise RuntimeError("the handler failed")
        except RuntimeError:
            pass
        async with db.begin() as conn:
            assert await inbox_module.claim(conn, "q", ["a"]) == {"a"}
    finally:
        await db.close()


async def test_claimed_rows_are_pruned_by_when_they_were_handled(
        storage: dict[str, Any]) -> None:
    db = Database("claims", storage["database_url"], schema=storage["schema"])
    await db.create()
    try:
        async with db.begin() as conn:
            await inbox_module.claim(conn, "q", ["early"])
        await asyncio.sleep(0.01)
        between = datetime.now(UTC)
        await asyncio.sleep(0.01)
        async with db.begin() as conn:
            await inbox_module.claim(conn, "q", ["late"])
        assert await inbox_module.prune(db, between - timedelta(seconds=5)) == 0
        assert await inbox_module.prune(db, between) == 1
        async with db.read() as conn:
            left = list(await conn.scalars(select(inbox.c.message_id)))
            handled = await conn.scalar(select(inbox.c.handled_at))
        assert left == ["late"]
        assert handled is not None and abs(
            (handled.replace(tzinfo=handled.tzinfo or UTC) - between).total_seconds()) < 5
    finally:
        await db.close()
