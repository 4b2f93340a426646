"""The transactional outbox: messages are rows written with the business data, then relayed.

Whatever a command or handler publishes becomes an outbox row in the same database
transaction as its business writes: both commit, or neither. The relay reads rows in
order, publishes them to JetStream with ``Nats-Msg-Id`` = message id, waits for the
broker's acks, and deletes what was acknowledged (so the table stays small).

If the process dies after the publish and before the delete, the rows go out again and
the broker's duplicate window drops them. With the broker down, commits still succeed and
the rows wait; the relay drains the backlog, in order, when the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select, text

from pizza.eventing import inbox
from pizza.eventing.storage import AsyncConnection, Database, outbox
from pizza.eventing.transport.base import Outgoing, Transport

log = logging.getLogger("pizza.eventing.outbox")


async def write(conn: AsyncConnection, messages: Sequence[Outgoing]) -> None:
    """Add messages to the outbox inside the caller's transaction (one executemany)."""
    if not messages:
        return
    now = datetime.now(UTC)
    await conn.execute(
        insert(outbox),
        [
            {
                "message_id": m.message_id,
                "subject": m.subject,
                "payload": m.payload,
                "traceparent": m.traceparent,
                "created_at": now,
            }
            for m in messages
        ],
    )


class Relay:
    """Publishes a service's outbox to the broker, in order, one relay per database.

    It wakes when a transaction that wrote outbox rows commits (``wake()``), and on a
    timer, to pick up what a crashed process left behind. On PostgreSQL several processes
    of one service may run a relay each: a transaction-scoped advisory lock lets one drain
    at a time, which keeps the order.
    """

    def __init__(self, db: Database, transport: Transport, *, batch: int = 5000,
                 interval: float = 1.0, inbox_retention: timedelta = timedelta(days=7)) -> None:
        self.db = db
        self.transport = transport
        self.batch = batch
        self.interval = interval
        self.inbox_retention = inbox_retention
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_key = zlib.crc32(f"pizza-relay-{db.service}".encode()) & 0x7FFFFFFF
        self._last_prune = 0.0
        self._sent_up_to = 0  # SQLite: rows up to here are published, maybe not deleted
        self._cleanup = asyncio.Event()
        self._cleaner: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.db.service}")
        if self.db.is_sqlite:
            self._cleaner = asyncio.create_task(self._clean_up(),
                                                name=f"relay-cleanup-{self.db.service}")

    async def stop(self) -> None:
        """Stop, after one last attempt to publish what is waiting and to tidy up."""
        for task in (self._task, self._cleaner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._cleaner = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), timeout=5)
        if self._sent_up_to:
            with contextlib.suppress(Exception):
                async with self.db.begin() as conn:
                    await self._remove(conn, self._sent_up_to)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.interval)
            self._wakeup.clear()
            try:
                await self.drain()
                if loop.time() - self._last_prune > 60:
                    self._last_prune = loop.time()
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database or broker hiccup must never end the relay
                log.exception("outbox relay of %s failed; retrying", self.db.service)
                await asyncio.sleep(self.interval)

    async def drain(self) -> int:
        """Publish everything waiting; return how many went out."""
        sent = 0
        started = time.perf_counter()
        while self.transport.connected:
            count, complete = await self._relay_batch()
            sent += count
            if not complete or count < self.batch:
                break
        if sent:
            log.debug("%s relayed %d in %.1f ms", self.db.service, sent,
                      (time.perf_counter() - started) * 1000)
        return sent

    async def backlog(self) -> int:
        """Rows not yet published (sent rows awaiting deletion do not count)."""
        async with self.db.read() as conn:
            return int(await conn.scalar(
                select(func.count()).select_from(outbox)
                .where(outbox.c.seq > self._sent_up_to)) or 0)

    async def _relay_batch(self) -> tuple[int, bool]:
        if self.db.is_sqlite:
            return await self._relay_batch_sqlite()
        async with self.db.begin() as conn:
            got_lock = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": self._lock_key}
            )
            if not got_lock:
                return 0, False  # another process of this service is relaying
            rows = await self._read(conn)
            acked = await self._publish(rows)
            if acked:
                await self._remove(conn, rows[acked - 1].seq)
            return acked, acked == len(rows)

    async def _relay_batch_sqlite(self) -> tuple[int, bool]:
        """Read and publish past a watermark; delete sent rows later, off the hot path.

        Deleting needs SQLite's one write lock, which handlers and HTTP commands hold most
        of the time under load: waiting for it made the relay lag by seconds. The
        watermark is safe on SQLite because writers are serialized, so rows commit in
        ``seq`` order and none can appear below it later (on PostgreSQL they can: there
        the delete stays in the relay's transaction). A crash before the delete
        republishes, and the broker's duplicate window drops the copies.
        """
        async with self.db.read() as conn:
            rows = await self._read(conn, after=self._sent_up_to)
        acked = await self._publish(rows)
        if acked:
            self._sent_up_to = rows[acked - 1].seq
            self._cleanup.set()
        return acked, acked == len(rows)

    async def _clean_up(self) -> None:
        """Delete the rows already published (SQLite), whenever the write lock is free."""
        while True:
            await self._cleanup.wait()
            self._cleanup.clear()
            try:
                async with self.db.begin() as conn:
                    await self._remove(conn, self._sent_up_to)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not remove sent outbox rows of %s", self.db.service)
                await asyncio.sleep(self.interval)
                self._cleanup.set()

    async def _read(self, conn: AsyncConnection, after: int = 0) -> list[Outgoing]:
        result = await conn.execute(
            select(outbox.c.seq, outbox.c.message_id, outbox.c.subject, outbox.c.payload,
                   outbox.c.traceparent)
            .where(outbox.c.seq > after)
            .order_by(outbox.c.seq)
            .limit(self.batch)
        )
        return [Outgoing(row.message_id, row.subject, row.payload, row.traceparent, row.seq)
                for row in result]

    async def _publish(self, rows: list[Outgoing]) -> int:
        if not rows:
            return 0
        return await self.transport.publish(rows)

    async def _remove(self, conn: AsyncConnection, up_to_seq: int) -> None:
        await conn.execute(delete(outbox).where(outbox.c.seq <= up_to_seq))

    async def prune(self) -> None:
        async with self.db.begin() as conn:
            removed = await inbox.prune(conn, datetime.now(UTC) - self.inbox_retention)
        if removed:
            log.info("pruned %d inbox rows of %s", removed, self.db.service)
