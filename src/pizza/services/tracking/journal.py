"""The journal: every message on the bus, as it happens, for the operator's /events page.

A read model (CQRS, the query side) of message METADATA only: type, version, source,
time, ids, subject, and for a dead letter why it died and which queue gave up. Never the
data, which may be personal.

It is fed by four durable queues of the tracking service's own, one per stream
(``pizza.events.>``, ``pizza.commands.>``, ``pizza.replies.>`` and
``pizza.deadletters.>``), declared as taps (``Service.taps``) so the broker lets tracking
use exactly them. They are drained here rather than by the kernel's handlers: the
journal reads every type, known or not, opens no personal data, and never dead-letters
(a message it cannot read is acknowledged and left to its real consumers, whose dead
letter then shows here). The queues start with what is published after they are first
made, not with the streams' history.

* Idempotent: ``key`` is unique (the message id; a dead letter's ``Nats-Msg-Id``), so a
  redelivery, or a retried dead letter on its retry subject, is one row.
* Bounded: every string as the envelope bounds it; what comes in any longer is cut.
* Retention: rows older than ``KEEP_HOURS`` (24 h, by arrival) and beyond the newest
  ``KEEP_ROWS`` (20,000) are pruned every ``PRUNE_SECONDS``.
* Live: a commit rings ``changes`` (this process); a stream also re-reads every
  ``POLL_SECONDS`` for rows another process wrote to a shared database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from pizza.eventing import ServiceHost
from pizza.eventing.catalog import (
    COMMANDS_PREFIX,
    DEAD_LETTERS_PREFIX,
    EVENTS_PREFIX,
    REPLIES_PREFIX,
)
from pizza.eventing.envelope import Envelope, MalformedMessage, format_time
from pizza.eventing.outage import database_unavailable
from pizza.eventing.storage import Database, upsert
from pizza.eventing.transport.base import (
    DEAD_CONSUMER,
    DEAD_REASON,
    Delivery,
    Queue,
    QueueSpec,
)
from pizza.services.tracking.tables import journal

log = logging.getLogger("pizza.tracking.journal")

# Queue name (tracking-<name> on the broker) -> what it takes: every stream, whole.
TAPS: dict[str, str] = {
    "journal-events": f"{EVENTS_PREFIX}.>",
    "journal-commands": f"{COMMANDS_PREFIX}.>",
    "journal-replies": f"{REPLIES_PREFIX}.>",
    "journal-deadletters": f"{DEAD_LETTERS_PREFIX}.>",
}
KINDS = {EVENTS_PREFIX: "event", COMMANDS_PREFIX: "command", REPLIES_PREFIX: "reply",
         DEAD_LETTERS_PREFIX: "dead-letter"}

KEEP_HOURS = 24.0
KEEP_ROWS = 20_000
PRUNE_SECONDS = 60.0
PRUNE_BATCH = 1000
BATCH = 128  # messages fetched (and written in one transaction) at a time
POLL_SECONDS = 1.0
MAX_LIMIT = 500  # rows one answer holds at most
STORY_LIMIT = 500  # messages of one order's story
MAX_VERSION = 2**31 - 1  # what the version column holds (metadata sets no bound)

_LIMITS = {"key": 200, "subject": 255, "dead_reason": 32, "dead_consumer": 128}


@dataclass(frozen=True, slots=True)
class TapSpec(QueueSpec):
    """A queue over a whole stream: its wildcard covers the retry subjects already."""

    @property
    def subjects(self) -> list[str]:
        return [self.subject]


def _cut(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[:limit]


def _time(raw: str, fallback: datetime) -> str:
    """metadata.time read back to ours (RFC 3339 UTC, ms); the arrival if unreadable."""
    try:
        return format_time(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return format_time(fallback)


def entry(delivery: Delivery, now: datetime) -> dict[str, Any] | None:
    """The journal row of one delivery, or None if there is nothing true to record (not
    an envelope, or an event whose subject is not its claimed source's)."""
    subject = delivery.subject
    prefix = next((p for p in KINDS if subject.startswith(p + ".")), None)
    if prefix is None:
        return None
    kind = KINDS[prefix]
    try:
        meta = Envelope.decode(delivery.data).metadata
    except MalformedMessage:
        meta = None
    if kind != "dead-letter":
        if meta is None:
            return None  # its real consumers dead-letter it; that dead letter shows here
        if kind == "event" and subject.split(".")[2:3] != [meta.source]:
            return None  # a forgery: its consumers dead-letter it as forged
        if meta.version > MAX_VERSION:
            return None  # no such version: its consumers dead-letter it
        return {
            "key": meta.id, "kind": kind, "message_id": meta.id, "type": meta.type,
            "version": meta.version, "source": meta.source, "time": _time(meta.time, now),
            "correlation_id": meta.correlation_id, "causation_id": meta.causation_id,
            "subject": _cut(subject, _LIMITS["subject"]), "dead_reason": None,
            "dead_consumer": None, "received_at": now,
        }
    headers = delivery.headers or {}
    consumer = _cut(headers.get(DEAD_CONSUMER) or "", _LIMITS["dead_consumer"]) or "?"
    # pizza.deadletters.<service>.<queue>: the service whose queue gave up.
    service = subject.split(".")[2] if subject.count(".") >= 2 else "?"
    key = headers.get("Nats-Msg-Id") or f"dead:{consumer}:{meta.id if meta else '?'}"
    return {
        "key": _cut(key, _LIMITS["key"]), "kind": kind,
        "message_id": meta.id if meta else None,
        "type": meta.type if meta else "(unreadable)",
        "version": meta.version if meta and meta.version <= MAX_VERSION else 0,
        "source": _cut(service, 64), "time": format_time(now),
        "correlation_id": meta.correlation_id if meta else None,
        "causation_id": meta.id if meta else None,  # died of that message
        "subject": _cut(subject, _LIMITS["subject"]),
        "dead_reason": _cut(headers.get(DEAD_REASON) or "?", _LIMITS["dead_reason"]),
        "dead_consumer": consumer, "received_at": now,
    }


def to_json(row: Any) -> dict[str, Any]:
    """One journal row as the API answers it (camelCase)."""
    dead = None
    if row.kind == "dead-letter":
        dead = {"reason": row.dead_reason, "consumer": row.dead_consumer}
    return {
        "seq": row.seq, "kind": row.kind, "id": row.message_id, "type": row.type,
        "version": row.version, "source": row.source, "time": row.time,
        "correlationId": row.correlation_id, "causationId": row.causation_id,
        "subject": row.subject, "deadLetter": dead,
    }


async def record(db: Database, rows: list[dict[str, Any]]) -> int:
    """Write rows, each key once; how many were new."""
    if not rows:
        return 0
    unique = list({row["key"]: row for row in rows}.values())
    async with db.begin() as conn:
        # Rows as parameters, not .values(rows): one statement SQLAlchemy compiles once
        # and batches per call ("insertmanyvalues"); a multi-row VALUES is compiled anew
        # for every batch (8% of a busy system's CPU).
        statement = (upsert(conn, journal).on_conflict_do_nothing(index_elements=["key"])
                     .returning(journal.c.seq))
        return len((await conn.execute(statement, unique)).all())


async def prune(db: Database, now: datetime | None = None, *, keep_hours: float = KEEP_HOURS,
                keep_rows: int = KEEP_ROWS, batch: int = PRUNE_BATCH) -> int:
    """Forget rows older than ``keep_hours`` and beyond the newest ``keep_rows``, in
    batches (one transaction each, the event loop turning between); how many."""
    now = now or datetime.now(UTC)
    async with db.read() as conn:
        newest = (await conn.execute(select(func.max(journal.c.seq)))).scalar() or 0
    old = (journal.c.received_at < now - timedelta(hours=keep_hours)) | (
        journal.c.seq <= newest - keep_rows)
    removed = 0
    while True:
        async with db.begin() as conn:
            some = select(journal.c.seq).where(old).limit(batch).scalar_subquery()
            result = await conn.execute(delete(journal).where(journal.c.seq.in_(some)))
        count = int(getattr(result, "rowcount", 0) or 0)
        removed += count
        if count < batch:
            return removed
        await asyncio.sleep(0)


def _filtered(query: Any, order_id: str | None, kind_of: str | None) -> Any:
    if order_id:
        query = query.where(journal.c.correlation_id == order_id)
    if kind_of:
        query = query.where(journal.c.type == kind_of)
    return query


async def newest(db: Database, *, order_id: str | None = None, type_: str | None = None,
                 limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """The newest entries first (by arrival), optionally of one order or type, before
    the entry numbered ``before``."""
    query = _filtered(select(journal), order_id, type_)
    if before is not None:
        query = query.where(journal.c.seq < before)
    query = query.order_by(journal.c.seq.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    async with db.read() as conn:
        return [to_json(row) for row in (await conn.execute(query)).all()]


async def since(db: Database, after: int, *, order_id: str | None = None,
                type_: str | None = None, limit: int = MAX_LIMIT) -> list[dict[str, Any]]:
    """Entries that arrived after the one numbered ``after``, oldest first."""
    query = _filtered(select(journal).where(journal.c.seq > after), order_id, type_)
    query = query.order_by(journal.c.seq).limit(limit)
    async with db.read() as conn:
        return [to_json(row) for row in (await conn.execute(query)).all()]


async def last_seq(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.max(journal.c.seq)))).scalar() or 0)


async def story(db: Database, order_id: str) -> list[dict[str, Any]]:
    """Every message of one order's story (its correlationId), in time order."""
    query = (select(journal).where(journal.c.correlation_id == order_id)
             .order_by(journal.c.time, journal.c.seq).limit(STORY_LIMIT))
    async with db.read() as conn:
        return [to_json(row) for row in (await conn.execute(query)).all()]


class Journal:
    """The running journal of one tracking process: its queues and their tasks."""

    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.db = host.db
        self.changes = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Make (or join) the queues before returning: nothing published later is missed."""
        service = self.host.name
        specs = [TapSpec(name=f"{service}-{name}", subject=subject, max_in_flight=BATCH * 2)
                 for name, subject in TAPS.items()]
        queues = await asyncio.gather(*(self.host.transport.queue(s) for s in specs))
        self._tasks = [asyncio.create_task(self._drain(spec.name, queue), name=spec.name)
                       for spec, queue in zip(specs, queues, strict=True)]
        self._tasks.append(asyncio.create_task(self._prune_now_and_then(),
                                               name=f"{service}-journal-prune"))

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def ring(self) -> None:
        async with self.changes:
            self.changes.notify_all()

    async def wait(self, timeout: float) -> None:
        """Until a commit rings, or ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self.changes:
                await self.changes.wait()

    async def _drain(self, name: str, queue: Queue) -> None:
        pause = 0.05
        try:
            while not self._stopping.is_set():
                deliveries: list[Delivery] = []
                try:
                    deliveries = await queue.fetch(BATCH, timeout=0.5)
                    if not deliveries:
                        continue
                    now = datetime.now(UTC)
                    rows = [row for d in deliveries if (row := entry(d, now)) is not None]
                    new = await self._record(name, rows)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the broker or the database is away: later
                    log.warning("%s: %s", name, " ".join(str(error).split())[:200])
                    for delivery in deliveries:
                        with contextlib.suppress(Exception):
                            await delivery.nak(1.0)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                pause = 0.05
                for delivery in deliveries:
                    with contextlib.suppress(Exception):  # redelivered: one row still
                        await delivery.ack()
                if new:
                    await self.ring()
        finally:
            with contextlib.suppress(Exception):
                await queue.close()

    async def _record(self, name: str, rows: list[dict[str, Any]]) -> int:
        """Write the batch; if the database refuses it (not an outage: those raise, and
        the batch is tried again), row by row, leaving out a row it refuses, so that one
        bad message never stops the journal."""
        try:
            return await record(self.db, rows)
        except Exception as error:
            if database_unavailable(error) is not None:
                raise  # away (or maybe): the batch is tried again later
            if len(rows) == 1:
                log.warning("%s: left out a message the database refused: %s", name,
                            " ".join(str(error).split())[:200])
                return 0
        new = 0
        for row in rows:
            new += await self._record(name, [row])
        return new

    async def _prune_now_and_then(self) -> None:
        while True:
            try:
                removed = await prune(self.db)
                if removed:
                    log.info("journal: pruned %d entries", removed)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("journal: prune failed: %s", " ".join(str(error).split())[:200])
            await asyncio.sleep(PRUNE_SECONDS)


class Journals:
    """The journal of one tracking service while it runs (its factory adds ``start`` and
    ``stop`` to the service's hooks; routes read ``current()``)."""

    def __init__(self) -> None:
        self._current: Journal | None = None

    def current(self) -> Journal:
        if self._current is None:
            raise RuntimeError("the tracking service is not running")
        return self._current

    async def start(self, host: ServiceHost) -> None:
        running = Journal(host)
        await running.start()
        self._current = running

    async def stop(self, _host: ServiceHost) -> None:
        running, self._current = self._current, None
        if running is not None:
            await running.stop()
