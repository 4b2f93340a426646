"""The subscription runtime: drain one durable queue into its handlers, exactly-once in effect.

For each fetched batch:

1. Decode every message once. What cannot be read or validated goes to dead letters at
   once: no retry can fix it.
2. A subscription's step that calls someone else over the network (``before=``) runs
   first, for the messages the inbox has not seen, with NO transaction open: no database
   lock is held across a network call. Its result goes to the handler.
3. Handle the batch in ONE transaction: the inbox rows (which tell us which messages are
   new), every handler's writes, and the messages they send (outbox rows). One commit per
   batch is what makes SQLite fast enough (see the README's kernel notes).
4. If any handler fails, roll the batch back and go one message per transaction, so only
   the failing message is retried.
5. Ack what committed. A failed message is retried with exponential backoff (``nak`` with
   a delay) until its attempts are used up; then it goes to dead letters with the reason,
   the error and the attempt count, and the queue goes on.

The broker's ``max_ack_pending`` is the in-flight limit, and a batch is never larger than
it. Stopping finishes the batch in hand and returns; nothing is left half-done.

An outage is not a handler failure. When a transaction fails because the database is
unreachable (``outage.database_unavailable``, confirmed by a probe), the queue pauses
with the batch in hand: it tells the broker the messages are in progress (no
redelivery, no attempt counted), probes the database with backoff, and handles the same
batch again once it answers. A broker that cannot be fetched from is waited for the same
way. Each outage is logged once when it starts and once when it ends.

Personal fields sealed by their producer (personal.py) are opened before the message is
validated, with the keys of the whole batch fetched at once. A message whose key was
erased (its person forgotten) never reaches the handler: the subscription's ``forgotten``
hook answers it, or it is acknowledged and skipped. A key store that cannot be reached
is the broker being away: the message is tried again later, no attempt spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pizza.eventing import inbox, log_context, outbox, personal, topology, tracing
from pizza.eventing.catalog import Message, MessageInfo, Registry, forgery
from pizza.eventing.context import Context, Transaction, run_commit_callbacks
from pizza.eventing.envelope import Envelope, MalformedMessage
from pizza.eventing.namespace import Namespace
from pizza.eventing.outage import Outage, database_unavailable
from pizza.eventing.service import Handler, Reject, Subscription
from pizza.eventing.storage import Database
from pizza.eventing.transport.base import (
    BrokerUnavailable,
    Delivery,
    Queue,
    Transport,
    retry_subject,
)

if TYPE_CHECKING:
    from pizza.eventing.metrics import QueueMetrics

log = logging.getLogger("pizza.eventing.consumer")

MAX_BATCH = 256

# Between probes of a dependency that is away: from the first to the last, doubling.
FIRST_PAUSE = 0.05
LONGEST_PAUSE = 2.0
# Times a batch is handled again after a database error whose probe then passed at once
# (a lock released just then): more means the error is the handler's own.
FREE_RETRIES = 3

_broker_outages: weakref.WeakKeyDictionary[Transport, Outage] = weakref.WeakKeyDictionary()


def _broker_outage(transport: Transport) -> Outage:
    """One per transport (one connection): its queues share one log line per outage."""
    found = _broker_outages.get(transport)
    if found is None:
        found = _broker_outages[transport] = Outage(f"the broker at {transport.url}", log)
    return found


@dataclass(slots=True)
class Received:
    delivery: Delivery
    envelope: Envelope
    message: Message
    handler: Handler
    data_subject: str | None = None  # whose personal data it carried (a key reference)
    prepared: Any = None  # what the subscription's step before the transaction returned

    @property
    def info(self) -> MessageInfo:
        return self.message.info


@dataclass(slots=True)
class _Forgotten:
    """A message whose personal data can no longer be opened: its key was erased."""

    envelope: Envelope
    info: MessageInfo


class _Later:
    """The key store is away: the message waits, no attempt spent."""


_LATER = _Later()


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    max_in_flight_seen: int = 0


class Consumer:
    """``namespace``: the system whose subjects and streams it uses (the transport's by
    default)."""

    def __init__(self, service: str, subscription: Subscription, db: Database,
                 transport: Transport, registry: Registry, relay: outbox.Relay, *,
                 namespace: Namespace | None = None) -> None:
        self.service = service
        self.subscription = subscription
        self.namespace = namespace = namespace or transport.namespace
        self.spec = topology.queue_spec(service, subscription, namespace)
        self._dead_letters = namespace.dead_letter_subject(service, subscription.name)
        self.name = self.spec.name
        self.db = db
        self.transport = transport
        self.registry = registry
        self.relay = relay
        self.stats = ConsumerStats()
        self.metrics: QueueMetrics | None = None  # given by the runtime's metrics
        self.queue: Queue | None = None
        self._stopping = asyncio.Event()  # run() gives the host's
        self._retry_suffix = retry_subject("", self.name)
        self._free_retries = 0

    async def open(self) -> None:
        """Create (or join) the durable queue: from now on nothing published is missed."""
        self.queue = await self.transport.queue(self.spec)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch and handle batches until ``stopping``; the batch in hand is finished."""
        if self.queue is None:
            await self.open()
        queue = self.queue
        assert queue is not None
        self._stopping = stopping
        broker = _broker_outage(self.transport)
        batch = min(MAX_BATCH, self.subscription.max_in_flight)
        pause = FIRST_PAUSE
        try:
            while not stopping.is_set():
                try:
                    deliveries = await queue.fetch(batch, timeout=0.5)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # broker away: wait and try again
                    broker.begin(self.name, error)
                    await _rest(stopping, pause)
                    pause = min(pause * 2, LONGEST_PAUSE)
                    continue
                if broker.since is not None:
                    broker.end(self.name)
                    pause = FIRST_PAUSE
                if deliveries:
                    await self.handle(deliveries)
        finally:
            broker.forget(self.name)
            self.db.outage.forget(self.name)
            await queue.close()
            self.queue = None

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Handle one fetched batch, in the order the queue gave it."""
        self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, len(deliveries))
        received: list[Received] = []
        envelopes = [self._envelope(delivery) for delivery in deliveries]
        keys = await self._keys(envelopes)
        for delivery, read in zip(deliveries, envelopes, strict=True):
            decoded = read if isinstance(read, str) else self._decode(delivery, read, keys)
            if isinstance(decoded, str):  # no retry can fix it
                await self._dead_letter(delivery, "malformed", decoded)
                continue
            if isinstance(decoded, _Later):  # the key store is away: no attempt spent
                await _settle(delivery.nak(1.0))
                continue
            forged = forgery(delivery.subject, decoded.envelope.metadata.source,
                             decoded.info)
            if forged is not None:  # not from whom it says: never handled
                await self._dead_letter(delivery, "forged", forged)
            elif isinstance(decoded, _Forgotten):
                await self._forgotten(delivery, decoded.envelope)
            else:
                received.append(decoded)
        if self.subscription.before:
            received = await self._before(received)
        if not received:
            return
        try:
            await self._transaction(received)
            return
        except Exception as error:
            failure = error
        self._free_retries = 0
        while True:  # the database may be away: then wait for it and try again
            verdict = await self._through_outage(failure, received)
            if verdict == "stop":
                return
            if verdict == "failed":
                break
            try:
                await self._transaction(received)
                return
            except Exception as error:
                failure = error
        if len(received) == 1:
            await self._failed(received[0], failure)
            return
        for index, one in enumerate(received):  # find the one that fails; commit the others
            while True:
                try:
                    await self._transaction([one])
                    break
                except Exception as single_error:
                    verdict = await self._through_outage(single_error, received[index:])
                    if verdict == "stop":
                        return
                    if verdict == "failed":
                        await self._failed(one, single_error)
                        break

    async def _before(self, batch: list[Received]) -> list[Received]:
        """Run the subscription's steps that must not hold a transaction open (calls to
        someone else), all of the batch at once, for the messages not handled before.
        A message whose step fails leaves the batch and is retried or dead-lettered like
        a failed handler; the others go on to their transaction."""
        steps = self.subscription.before
        try:
            handled = await inbox.seen(self.db, self.name,
                                       [item.envelope.metadata.id for item in batch])
        except Exception:  # the database is away: the transaction will wait for it
            handled = set()
        wanted = [item for item in batch if item.envelope.metadata.id not in handled
                  and (item.envelope.metadata.type, item.envelope.metadata.version) in steps]
        if not wanted:
            return batch

        async def prepare(item: Received) -> None:
            meta = item.envelope.metadata
            with log_context.handling(self.service, self.subscription.name, meta,
                                      item.message):
                item.prepared = await steps[(meta.type, meta.version)](item.message, meta)

        outcomes = await asyncio.gather(*(prepare(item) for item in wanted),
                                        return_exceptions=True)
        failed: set[int] = set()
        for item, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, Exception):
                failed.add(id(item))
                await self._failed(item, outcome)
        return [item for item in batch if id(item) not in failed]

    async def _through_outage(self, error: Exception, batch: list[Received]) -> str:
        """After a failed transaction: ``"failed"`` if the handler failed (retry it later,
        spending an attempt); ``"retry"`` once the database, which was away, is back (the
        batch was kept alive meanwhile); ``"stop"`` if the consumer is stopping first
        (the batch is left to the broker, which redelivers it)."""
        verdict = database_unavailable(error)
        if verdict is None:
            return "failed"
        outage = self.db.outage
        loop = asyncio.get_running_loop()
        keep_alive_at = 0.0
        pause = FIRST_PAUSE
        while True:
            try:
                await self.db.probe()
            except asyncio.CancelledError:
                raise
            except Exception as probe_error:
                outage.begin(self.name, probe_error)
            else:
                if self.name in outage.reporters:
                    outage.end(self.name)
                    return "retry"
                # It answers at once: a lock released just now, or the handler's own error.
                if verdict == "database" and self._free_retries < FREE_RETRIES:
                    self._free_retries += 1
                    return "retry"
                return "failed"
            if self._stopping.is_set():
                outage.forget(self.name)
                return "stop"
            if loop.time() >= keep_alive_at:  # no redelivery, no attempt counted
                keep_alive_at = loop.time() + min(self.spec.ack_wait / 3, 10.0)
                for item in batch:
                    with contextlib.suppress(Exception):
                        await item.delivery.in_progress()
            await _rest(self._stopping, pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    @staticmethod
    def _envelope(delivery: Delivery) -> Envelope | str:
        try:
            return Envelope.decode(delivery.data)
        except MalformedMessage as error:
            return str(error)

    def _personal(self, envelope: Envelope) -> tuple[personal.Path, ...]:
        cls = self.registry.get(envelope.metadata.type, envelope.metadata.version)
        return personal.personal_fields(cls) if cls is not None else ()

    async def _keys(self, envelopes: list[Envelope | str]) -> dict[str, bytes | None] | None:
        """The keys of every sealed field in the batch, at once; None if the key store
        cannot be reached now."""
        refs: set[str] = set()
        for envelope in envelopes:
            if isinstance(envelope, Envelope):
                paths = self._personal(envelope)
                if paths:
                    with contextlib.suppress(MalformedMessage):  # judged in _decode
                        refs |= personal.refs_in(envelope.data, paths)
        if not refs:
            return {}
        try:
            return await personal.key_store(self.transport).get_many(refs)
        except personal.KeyStoreUnavailable as error:
            _broker_outage(self.transport).begin(self.name, error)
            return None

    def _decode(self, delivery: Delivery, envelope: Envelope,
                keys: dict[str, bytes | None] | None) -> Received | _Forgotten | _Later | str:
        """The typed message and its handler, or why it cannot be handled."""
        try:
            meta = envelope.metadata
            handler = self.subscription.handlers.get((meta.type, meta.version))
            if handler is None:
                return f"{self.name} has no handler for {meta.type} v{meta.version}"
            subject = None
            cls = self.registry.get(meta.type, meta.version)
            paths = personal.personal_fields(cls) if cls is not None else ()
            if cls is not None and paths:
                if keys is None and personal.refs_in(envelope.data, paths):
                    return _LATER
                try:
                    subject = personal.open_data(envelope.data, paths, meta.id, keys or {})
                except personal.Forgotten:
                    return _Forgotten(envelope, cls.info)
            message = self.registry.decode(envelope, self.namespace)
        except MalformedMessage as error:
            return str(error)
        return Received(delivery, envelope, message, handler, subject)

    async def _forgotten(self, delivery: Delivery, envelope: Envelope) -> None:
        """A message whose person was forgotten: once, the subscription's ``forgotten``
        hook answers it (if it has one); then it is acknowledged. Never retried."""
        meta = envelope.metadata
        hook = self.subscription.forgotten
        try:
            async with self.db.begin() as conn:
                ctx = Context(self.service, conn, meta, namespace=self.namespace)
                if meta.id in await inbox.claim(conn, self.name, [meta.id]) and hook:
                    await hook(ctx)
                await ctx.transaction.flush()
                await outbox.write(conn, ctx.outgoing)
        except Exception as error:  # the database is away, or the hook failed: later
            log.warning("%s: %s %s (personal data forgotten) not settled yet: %s",
                        self.name, meta.type, meta.id, str(error)[:200])
            await _settle(delivery.nak(1.0))
            return
        if ctx.outgoing:
            self.relay.wake()
        run_commit_callbacks([ctx])
        log.info("%s: %s %s carries personal data whose key was erased; %s", self.name,
                 meta.type, meta.id, "answered" if hook else "skipped")
        self.stats.handled += 1
        await _settle(delivery.ack())

    async def _transaction(self, batch: list[Received]) -> None:
        if not tracing.recording():
            await self._in_one_transaction(batch)
            return
        with tracing.batch(self.spec.subject, self.name,
                           [item.envelope.metadata for item in batch]):
            await self._in_one_transaction(batch)

    async def _in_one_transaction(self, batch: list[Received]) -> None:
        contexts: list[Context] = []
        spent: list[float] = []  # seconds in each handler, for the metrics
        recording = tracing.recording()  # once a batch: it looks at the environment
        namespace = self.namespace
        shared = Transaction()
        async with self.db.begin() as conn:
            new = await inbox.claim(conn, self.name, [r.envelope.metadata.id for r in batch])
            for item in batch:
                meta = item.envelope.metadata
                if meta.id not in new:
                    continue
                new.discard(meta.id)  # a duplicate inside one batch is handled once
                ctx = Context(self.service, conn, cause=meta,
                              data_subject=item.data_subject, namespace=namespace,
                              prepared=item.prepared, transaction=shared)
                about = log_context.current.set(log_context.Handling(
                    self.service, self.subscription.name, meta, item.message))
                started = time.perf_counter()
                try:
                    if recording:
                        with tracing.processing(self.service, item.delivery.subject, meta,
                                                self.name):
                            await item.handler(item.message, ctx)
                    else:  # no spans to make: the Context carries the trace on its own
                        tracing.handled(self.service, meta)
                        await item.handler(item.message, ctx)
                finally:
                    log_context.current.reset(about)
                spent.append(time.perf_counter() - started)
                contexts.append(ctx)
            await shared.flush()
            await outbox.write(conn, [m for ctx in contexts for m in ctx.outgoing])
        if any(ctx.outgoing for ctx in contexts):
            self.relay.wake()
        run_commit_callbacks(contexts)
        self.stats.handled += len(contexts)
        if self.metrics is not None:
            self.metrics.handled(spent)
        self.stats.duplicates += len(batch) - len(contexts)
        for item in batch:  # after the commit, never before; no coroutine of our own each
            try:
                await item.delivery.ack()
            except Exception as error:
                _unsettled(error)

    async def _failed(self, item: Received, error: Exception) -> None:
        """One message's handler raised: retry it later, or dead-letter it."""
        with log_context.handling(self.service, self.subscription.name,
                                  item.envelope.metadata, item.message):
            await self._retry_or_give_up(item, error)

    async def _retry_or_give_up(self, item: Received, error: Exception) -> None:
        if isinstance(error, Reject):
            await self._dead_letter(item.delivery, "rejected", _describe(error))
            return
        attempt = item.delivery.attempt
        if attempt >= self.subscription.max_attempts:
            await self._dead_letter(item.delivery, "handler-failed", _describe(error))
            return
        delay = self.subscription.backoff.delay(attempt)
        log.warning("%s: %s %s failed (attempt %d of %d), retrying in %.1fs: %s",
                    self.name, item.envelope.metadata.type, item.envelope.metadata.id,
                    attempt, self.subscription.max_attempts, delay, error)
        self.stats.retried += 1
        if self.metrics is not None:
            self.metrics.retried()
        await _settle(item.delivery.nak(delay))

    async def _dead_letter(self, delivery: Delivery, reason: str, error: str) -> None:
        namespace = self.namespace
        headers = {
            "Nats-Msg-Id": f"dead-{self.name}-{delivery.headers.get('Nats-Msg-Id', '')}"
                           f"-{delivery.attempt}",
            namespace.dead_reason: reason,
            namespace.dead_error: error[:4000],
            namespace.dead_attempts: str(delivery.attempt),
            # A retry that failed again is retried from its original subject as well.
            namespace.dead_subject: delivery.subject.removesuffix(self._retry_suffix),
            namespace.dead_consumer: self.name,
        }
        try:
            await self.transport.dead_letter(self._dead_letters, delivery.data, headers)
        except BrokerUnavailable as failure:  # retried when redelivered; logged once
            _broker_outage(self.transport).begin(self.name, failure)
            await _settle(delivery.nak(1.0))
            return
        log.error("%s: dead letter (%s) after %d attempt(s): %s", self.name, reason,
                  delivery.attempt, error)
        self.stats.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_lettered(reason)
        await _settle(delivery.term())


async def _rest(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake when the consumer is told to stop."""
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can turn a cancel that
    # arrives as the time runs out into a TimeoutError, which would be swallowed here.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()


def _describe(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return "".join(lines).strip()


async def _settle(verb: Awaitable[None]) -> None:
    """Ack, nak or term; if the connection is gone the broker redelivers, and the inbox
    makes that harmless, so a lost acknowledgement is logged, never raised."""
    try:
        await verb
    except Exception as error:
        _unsettled(error)


def _unsettled(error: Exception) -> None:
    global _unsettled_logged_at
    now = time.monotonic()
    if now - _unsettled_logged_at > 10.0:  # one line, not one per message
        _unsettled_logged_at = now
        log.warning("could not settle a message with the broker (the inbox makes its "
                    "redelivery harmless): %s", error)


_unsettled_logged_at = -1e9
