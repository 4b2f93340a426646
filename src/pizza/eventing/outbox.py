"""The transactional outbox: messages are rows written with the business data, then relayed.

Whatever a command or handler publishes becomes an outbox row in the same database
transaction as its business writes: both commit, or neither. The relay reads rows in
order, publishes them to JetStream with ``Nats-Msg-Id`` = message id, waits for the
broker's acks, and removes exactly the rows the broker settled (so the table stays small).

What it promises:

* **A committed row is removed only after the broker acknowledged that row.** On
  PostgreSQL, transactions of many processes commit in any order, so a row with a lower
  ``seq`` may become visible after a higher one was published: rows are deleted by their
  own ``seq``, never "everything up to", and the late one goes out on the next pass.
* **Order.** Rows go out in ``seq`` order, one relay of a service at a time. Messages of
  one transaction keep the order they were written in, and a transaction that began after
  another committed (the next step of the same order, say) publishes after it. Rows of
  transactions that ran at the same time have no order between them: their writers did
  not know about each other either.
* **One bad row never blocks the rest.** A row the broker can never take (no stream for
  its subject, over the size limit) is moved aside as a dead letter (``pizza deadletters
  list``), with its reason, and the rows behind it go on. A broker that is away or slow
  is transient: the relay backs off and tries the same rows again.
* **No duplicates after a long stop.** If the process dies after the publish and before
  the delete, the rows go out again and the broker's duplicate window drops them. When
  rows are older than that window, the relay first asks the stream which of them it
  already holds, and removes those instead of storing them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select, text

from pizza.eventing import inbox, inline_sqlite, personal, tracing
from pizza.eventing.namespace import Namespace
from pizza.eventing.storage import AsyncConnection, Database, outbox
from pizza.eventing.transport.base import (
    DUPLICATE_WINDOW,
    BrokerUnavailable,
    Outgoing,
    Transport,
)

log = logging.getLogger("pizza.eventing.outbox")

# Rows older than this may have been published longer ago than the broker remembers ids.
STALE_AFTER = timedelta(seconds=DUPLICATE_WINDOW - 15)
# What of an unpublishable payload a dead letter keeps (it may be the reason it failed).
KEPT_OF_REFUSED = 64 * 1024


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


@dataclass(slots=True)
class Row:
    message: Outgoing
    created_at: datetime


@dataclass
class RelayStats:
    published: int = 0
    refused: int = 0  # moved aside as dead letters
    already_stored: int = 0  # found on the stream after a long stop, not sent again


class Relay:
    """Publishes a service's outbox to the broker, in order, one relay per database.

    It wakes when a transaction that wrote outbox rows commits (``wake()``), and on a
    timer, to pick up what a crashed process left behind. On PostgreSQL several processes
    of one service may run a relay each: a session advisory lock, held on a connection
    with no transaction open, lets one drain at a time, which keeps the order.
    ``namespace``: the system whose dead letters take what the broker refuses (the
    transport's by default).
    """

    def __init__(self, db: Database, transport: Transport, *, batch: int = 5000,
                 interval: float = 1.0, inbox_retention: timedelta = timedelta(days=7),
                 max_backoff: float = 5.0, namespace: Namespace | None = None) -> None:
        self.db = db
        self.transport = transport
        self.namespace = namespace = namespace or transport.namespace
        self.batch = batch
        self.interval = interval
        self.max_backoff = max_backoff
        self.inbox_retention = inbox_retention
        self.stats = RelayStats()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_key = zlib.crc32(
            f"{namespace.prefix}-relay-{db.service}".encode()) & 0x7FFFFFFF
        self._last_prune = 0.0
        self._sent_up_to = 0  # SQLite: rows up to here are settled, maybe not deleted
        self._cleanup = asyncio.Event()
        self._cleaner: asyncio.Task[None] | None = None
        self._in_doubt_since: float | None = None  # a transient failure is going on

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
                    await self._remove(conn, up_to=self._sent_up_to)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):  # unlike wait_for, never
                    await self._wakeup.wait()               # turns a cancel into a timeout
            self._wakeup.clear()
            try:
                complete = await self._drain()
                if loop.time() - self._last_prune > 60:
                    self._last_prune = loop.time()
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a database or broker hiccup must never end the relay
                self._doubt(f"{type(error).__name__}: {str(error)[:300]}")
                complete = False
            # A transient failure: back off instead of hammering a broker that struggles,
            # whatever commits wake us meanwhile.
            backoff = 0.0 if complete else min(self.max_backoff, max(0.25, backoff * 2))
            if backoff:
                await asyncio.sleep(backoff)

    def _doubt(self, why: str) -> None:
        """One line when publishing starts failing, one when it works again."""
        if self._in_doubt_since is None:
            self._in_doubt_since = time.monotonic()
            log.warning("outbox relay of %s cannot publish now (%s); retrying with backoff",
                        self.db.service, why)

    def _recovered(self) -> None:
        if self._in_doubt_since is not None:
            log.info("outbox relay of %s publishes again after %.1f s", self.db.service,
                     time.monotonic() - self._in_doubt_since)
            self._in_doubt_since = None

    async def drain(self) -> int:
        """Publish everything waiting; return how many went out."""
        before = self.stats.published
        await self._drain()
        return self.stats.published - before

    async def _drain(self) -> bool:
        """Relay batches until the outbox is empty (True) or a row is in doubt (False)."""
        started = time.perf_counter()
        sent = 0
        while True:
            if not self.transport.connected:
                return False
            settled, complete = await self._relay_batch()
            sent += settled
            if not complete:
                if settled >= 0:
                    self._doubt("the broker did not acknowledge every message")
                return settled < 0  # another process of this service has the turn
            self._recovered()
            if settled < self.batch:
                break
        if sent:
            log.debug("%s relayed %d in %.1f ms", self.db.service, sent,
                      (time.perf_counter() - started) * 1000)
        return True

    async def backlog(self) -> int:
        """Rows not yet published (sent rows awaiting deletion do not count)."""
        async with self.db.read() as conn:
            return int(await conn.scalar(
                select(func.count()).select_from(outbox)
                .where(outbox.c.seq > self._sent_up_to)) or 0)

    async def waiting(self) -> tuple[int, datetime | None]:
        """The backlog, and when its oldest row was written (None when empty)."""
        async with self.db.read() as conn:
            row = (await conn.execute(
                select(func.count(), func.min(outbox.c.created_at))
                .where(outbox.c.seq > self._sent_up_to))).one()
        return int(row[0] or 0), None if row[1] is None else _aware(row[1])

    async def _relay_batch(self) -> tuple[int, bool]:
        """One batch: (rows settled, every row read was settled); (-1, False) when another
        process of this service holds the relay's turn."""
        if self.db.is_sqlite:
            return await self._relay_batch_sqlite()
        async with self._turn() as mine:
            if not mine:
                return -1, False
            async with self.db.read() as conn:
                rows = await self._read(conn)  # closed (rolled back) before we publish
            settled = await self._settle(rows)
            if settled:
                async with self.db.begin() as conn:
                    await self._remove(conn, seqs=[row.message.seq for row in rows[:settled]])
            return settled, settled == len(rows)

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """PostgreSQL: hold the service's relay lock for one pass. A session lock on an
        autocommit connection: no transaction spans the publish, and a process that dies
        loses its connection and with it the lock."""
        async with self.db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"),
                                    {"key": self._lock_key})
            try:
                yield bool(got)
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": self._lock_key})

    async def _relay_batch_sqlite(self) -> tuple[int, bool]:
        """Read and publish past a watermark; delete sent rows later, off the hot path.

        Deleting needs SQLite's one write lock, which handlers and HTTP commands hold most
        of the time under load: waiting for it made the relay lag by seconds. The
        watermark is safe on SQLite because one process owns the file and its writers are
        serialized, so rows commit in ``seq`` order and none can appear below it later (on
        PostgreSQL they can: there rows are deleted one by one). A crash before the delete
        republishes, and the broker's duplicate window (or ``_settle``'s look at the
        stream, for old rows) drops the copies.
        """
        async with self.db.read() as conn:
            rows = await self._read(conn, after=self._sent_up_to)
        settled = await self._settle(rows)
        if settled:
            self._sent_up_to = rows[settled - 1].message.seq
            self._cleanup.set()
        return settled, settled == len(rows)

    async def _clean_up(self) -> None:
        """Delete the rows already settled (SQLite), whenever the write lock is free."""
        while True:
            await self._cleanup.wait()
            self._cleanup.clear()
            try:
                async with self.db.begin() as conn:
                    await self._remove(conn, up_to=self._sent_up_to)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("could not remove sent outbox rows of %s yet: %s",
                            self.db.service, str(error)[:300])
                await asyncio.sleep(self.interval)
                self._cleanup.set()

    async def _read(self, conn: AsyncConnection, after: int = 0) -> list[Row]:
        direct = await inline_sqlite.driver(conn) if self.db.is_sqlite else None
        if direct is not None:
            # SQLite on its own connection: SQLAlchemy's rows, and its parsing of every
            # created_at, were a third of the relay's CPU, more than publishing the rows.
            return [Row(Outgoing(message_id, subject, payload, traceparent, seq),
                        _stored_time(created_at))
                    for seq, message_id, subject, payload, traceparent, created_at
                    in direct.execute(_READ_SQLITE, (after, self.batch))]
        result = await conn.execute(
            select(outbox.c.seq, outbox.c.message_id, outbox.c.subject, outbox.c.payload,
                   outbox.c.traceparent, outbox.c.created_at)
            .where(outbox.c.seq > after)
            .order_by(outbox.c.seq)
            .limit(self.batch)
        )
        return [Row(Outgoing(row.message_id, row.subject, row.payload, row.traceparent,
                             row.seq), _aware(row.created_at))
                for row in result]

    async def _settle(self, rows: list[Row]) -> int:
        """Publish the rows; return how many from the front are settled for good: stored
        by the broker (now or before), or refused and moved aside as dead letters."""
        if not rows:
            return 0
        if personal.needs_work(row.message for row in rows):
            # Seal personal fields and purge erased keys now, in order (KeyStoreUnavailable
            # leaves every row for the next pass, like a broker that is away).
            await personal.seal_outgoing([row.message for row in rows],
                                         personal.sealing_store(self.transport))
        stored: set[str] = set()
        stale = [row for row in rows if row.created_at < datetime.now(UTC) - STALE_AFTER]
        if stale:
            since = min(row.created_at for row in stale) - timedelta(seconds=30)
            stored = await self.transport.stored_ids([row.message for row in stale], since)
            self.stats.already_stored += len(stored)
            if stored:
                log.info("%s: %d message(s) older than the duplicate window were already on "
                         "the stream; not sending them again", self.db.service, len(stored))
        to_send = [row.message for row in rows if row.message.message_id not in stored]
        spans = tracing.publishing(to_send)  # one PRODUCER span each, with an SDK
        try:
            outcomes = await self.transport.publish(to_send)
        except BaseException as error:
            tracing.published(spans, None, error)
            raise
        tracing.published(spans, outcomes)
        settled = sent = 0
        for row in rows:
            if row.message.message_id not in stored:
                if sent == len(outcomes):
                    break  # in doubt: sent again on the next pass
                refusal = outcomes[sent]
                sent += 1
                if refusal is None:
                    self.stats.published += 1
                elif not await self._refused(row.message, refusal):
                    break
            settled += 1
        return settled

    async def _refused(self, message: Outgoing, reason: str) -> bool:
        """Move a row the broker will never take aside, as a dead letter; False if the
        dead letter itself cannot be stored now (the row stays, and is tried again)."""
        kept = message.payload[:KEPT_OF_REFUSED]
        namespace = self.namespace
        headers = {
            "Nats-Msg-Id": f"dead-outbox-{message.message_id}",
            namespace.dead_reason: "unpublishable",
            namespace.dead_error: reason,
            namespace.dead_attempts: "1",
            namespace.dead_subject: _printable(message.subject),
            namespace.dead_consumer: f"{self.db.service}-outbox",
        }
        if len(kept) < len(message.payload):
            headers[namespace.truncated_from] = str(len(message.payload))
        try:
            await self.transport.dead_letter(
                namespace.dead_letter_subject(self.db.service, "outbox"), kept, headers)
        except BrokerUnavailable as error:
            self._doubt(str(error)[:300])
            return False
        log.error("%s: outbox message %s cannot be published (%s); moved to dead letters, "
                  "the messages behind it go on", self.db.service, message.message_id, reason)
        self.stats.refused += 1
        return True

    async def _remove(self, conn: AsyncConnection, *, up_to: int | None = None,
                      seqs: Sequence[int] = ()) -> None:
        """Delete settled rows: everything up to the watermark (SQLite), or exactly these."""
        if up_to is not None:
            await conn.execute(delete(outbox).where(outbox.c.seq <= up_to))
        elif seqs:
            await conn.execute(delete(outbox).where(outbox.c.seq.in_(seqs)))

    async def prune(self) -> None:
        removed = await inbox.prune(self.db, datetime.now(UTC) - self.inbox_retention)
        if removed:
            log.info("pruned %d inbox rows of %s", removed, self.db.service)


_READ_SQLITE = (f"SELECT seq, message_id, subject, payload, traceparent, created_at "
                f"FROM {outbox.name} WHERE seq > ? ORDER BY seq LIMIT ?")


def _stored_time(stored: str | datetime) -> datetime:
    """A created_at as SQLite keeps it (SQLAlchemy writes ``2026-11-30 12:00:00.123456``,
    in UTC) as an aware datetime."""
    if isinstance(stored, str) and len(stored) == 26:  # the usual: parsed aware at once
        return datetime.fromisoformat(stored + "+00:00")
    moment = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    return _aware(moment)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _printable(text: str, limit: int = 255) -> str:
    """Safe as a header value: no control characters, bounded."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
