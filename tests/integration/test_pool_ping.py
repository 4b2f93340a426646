"""PostgreSQL connections the server dropped while they sat in the pool (a restart, an
idle timeout, an operator's pg_terminate_backend) are found before use: a connection
idle for a while is pinged at checkout, and a dead one replaced, so nothing fails. One
in steady use is not pinged (it was three round trips before every transaction)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from conftest import POSTGRES_URL, postgres_reachable
from pizza.eventing import storage
from pizza.eventing.storage import AsyncConnection, Database


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    reason = await postgres_reachable()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    database = Database("kitchen", POSTGRES_URL, schema=schema)
    await database.create(log_changes=False)
    yield database
    async with database.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await database.close()


async def backend_of(db: Database) -> int:
    async with db.begin() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def pid_of(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "IDLE_PING_SECONDS", 0.2)
    async with db.engine.connect() as one, db.engine.connect() as two:  # two in the pool
        pooled = {await pid_of(one), await pid_of(two)}
    async with db.engine.connect() as other:  # one of them; the other waits in the pool
        mine = await pid_of(other)
        [doomed] = pooled - {mine}
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": doomed})
        await other.commit()
    await asyncio.sleep(0.3)  # idle longer than the threshold

    async with db.begin() as first, db.begin() as second:  # both out of the pool at once
        now = {await pid_of(first), await pid_of(second)}
    assert doomed not in now and mine in now


async def test_a_connection_in_steady_use_is_not_pinged(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = 0
    ping = asyncpg_dialect.AsyncAdapt_asyncpg_connection.ping

    def counted(self: object) -> None:
        nonlocal pings
        pings += 1
        ping(self)

    monkeypatch.setattr(asyncpg_dialect.AsyncAdapt_asyncpg_connection, "ping", counted)
    for _ in range(5):
        await backend_of(db)
    assert pings == 0
    monkeypatch.setattr(storage, "IDLE_PING_SECONDS", 0.0)  # now every checkout is "idle"
    await backend_of(db)
    assert pings == 1
