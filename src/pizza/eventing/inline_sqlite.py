"""aiosqlite's interface, with SQLite run on the event loop's own thread.

aiosqlite sends every statement to a worker thread and back. Each round trip waits for
the event loop's next turn, so under load a transaction of five statements spans five
turns, and SQLite's one write lock (held for the whole transaction) is held that long
too: every other writer queues behind it. We measured 125 ms per order placed on a busy
`pizza up` while the event loop was two thirds idle.

A local SQLite file in WAL mode answers a statement in tens of microseconds, and this
process is its only writer (its writers queue on an asyncio lock first, see
storage.Database.begin), so running the statement right here blocks the loop for less
time than the hop cost. This is our own code because no library offers an inline mode.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncConnection


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs the call at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:  # handed to whoever awaits the future
            if future is not None and not future.done():
                future.set_exception(error)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=256)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no worker thread to start


async def driver(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``conn`` if it is one of ours (None for any other), for
    the few statements whose SQLAlchemy layers cost more than SQLite's own work (the inbox
    claim). It is the same connection, in the same transaction: BEGIN and COMMIT stay
    SQLAlchemy's."""
    raw = await conn.get_raw_connection()
    found = raw.driver_connection
    if isinstance(found, InlineConnection):
        return found._conn  # aiosqlite's handle on the sqlite3 connection it wraps
    return None


def connector(path: str) -> Callable[[], Any]:
    """An ``async_creator`` for SQLAlchemy's aiosqlite dialect."""

    async def connect() -> aiosqlite.Connection:
        def open_file() -> sqlite3.Connection:
            # A busy wait here would block the loop: a few ms, then the caller retries
            # asleep (storage._begin_when_free) or reports the database unavailable.
            return sqlite3.connect(path, timeout=0.005, check_same_thread=False)

        return await InlineConnection(open_file)

    return connect
