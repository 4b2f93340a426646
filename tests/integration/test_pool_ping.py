"""PostgreSQL connections the server dropped while they sat in the pool (a restart, an
idle timeout, an operator's pg_terminate_backend) are found before use: every checkout
is pinged, and a dead connection replaced, so no route or handler fails on one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from conftest import POSTGRES_URL, postgres_reachable
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


async def pid_of(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def test_a_connection_dropped_in_the_pool_is_replaced_before_use(
        db: Database) -> None:
    async with db.engine.connect() as one, db.engine.connect() as two:  # two in the pool
        pooled = {await pid_of(one), await pid_of(two)}
    async with db.engine.connect() as other:  # one of them; the other waits in the pool
        mine = await pid_of(other)
        [doomed] = pooled - {mine}
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": doomed})
        await other.commit()

    async with db.begin() as first, db.begin() as second:  # both out of the pool at once
        now = {await pid_of(first), await pid_of(second)}
    # No error, and the dead one is not used (finding it, SQLAlchemy renews the pool).
    assert doomed not in now
