"""NATS JetStream: the bus. One connection per process, streams made at start, pull queues.

Publishing sends a batch with many messages in flight and their acks awaited together
(as ``publish_async`` would, for less CPU: see ``NatsTransport.publish``), with
``Nats-Msg-Id`` set, so the broker's duplicate window drops a re-publish after a crash.
Each subscription is a durable pull consumer of its own, whose ``max_ack_pending`` is the
subscriber's in-flight limit: the queue in front of the handler that the talk asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.settings import nats_servers
from pizza.eventing.transport.base import (
    MAX_MESSAGE_BYTES,
    BrokerUnavailable,
    Delivery,
    Outgoing,
    Queue,
    QueueCounts,
    QueueSpec,
    Transport,
    retention,
    unpublishable,
)
from pizza.eventing.transport.base import (
    replicas as declared_replicas,
)
from pizza.eventing.transport.credentials import Credentials
from pizza.eventing.transport.permissions import lookup_consumer

log = logging.getLogger("pizza.eventing.nats")
T = TypeVar("T")

# Seconds before the last good fetch that a recreated consumer delivers from, on top of
# ack_wait (clock skew, a fetch that timed out while the consumer was already gone).
HEAL_MARGIN = 5.0
# Seconds between checks that a running queue's stream and consumer are as declared.
RECONCILE_EVERY = 60.0
# Seconds a start waits for the JetStream API to answer (a cluster just formed, or electing
# the leader of a stream many processes create at once, answers late), retrying meanwhile.
START_PATIENCE = 60.0
_SLOW = (NatsTimeout, TimeoutError, ServiceUnavailableError, NoRespondersError,
         NoStreamResponseError)  # a new bucket's stream before its leader is elected


class NatsDelivery(Delivery):
    __slots__ = ("_msg", "data", "headers", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.headers = msg.headers or {}

    @property
    def attempt(self) -> int:  # type: ignore[override]
        # Parsed from the reply subject only when asked: failures and dead letters.
        return self._msg.metadata.num_delivered or 1

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float) -> None:
        await self._msg.nak(delay=delay)

    async def term(self) -> None:
        await self._msg.term()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class NatsQueue(Queue):
    """A pull queue that heals: if its durable consumer (or the stream) is removed on the
    server, the next fetch recreates it with the declared settings.

    Pulling is done here, on nats-py's public verbs, instead of with its ``fetch``: that
    waits for each message with a task of its own (a uuid, a task, a timer and a turn of
    the event loop per message), which cost a consumer more CPU than handling the
    message. Here one subscription's callback collects what arrives, and a fetch waits
    once for the batch. What a fetch returns is what nats-py's returned, with the same
    request (``no_wait`` with ``expires``): what is there, up to the batch, at once (the
    broker ends its answer with a 404); when nothing was there, the broker holds the
    request until something comes (then the same) or it expires (a 408: nothing).
    Messages that arrive after a fetch returned are the next fetch's, in the order the
    broker sent them."""

    def __init__(self, transport: NatsTransport, spec: QueueSpec) -> None:
        self._transport = transport
        self._spec = spec
        self._next = f"{JS_API}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.name}"
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._arrived: list[Msg] = []  # messages, in arrival order
        self._statuses: list[str] = []  # status replies since the fetch began
        self._wanted = 0  # the waiting fetch is woken at this many messages
        self._waiter: asyncio.Future[None] | None = None
        self._fine_at = time.time()  # wall clock: the server's start time is one too
        self._checked_at = time.monotonic()

    async def open(self) -> None:
        nc = self._transport.nc
        self._inbox = nc.new_inbox()
        self._subscription = await nc.subscribe(self._inbox, cb=self._arrive)

    async def _arrive(self, msg: Msg) -> None:
        status = _status(msg)
        if status is None:
            self._arrived.append(msg)
            if len(self._arrived) < self._wanted:
                return
        else:
            self._statuses.append(status)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        if time.monotonic() - self._checked_at > RECONCILE_EVERY:
            # Changed on the server while we ran (an operator, a restore): set it back.
            self._checked_at = time.monotonic()
            await self._heal()
        try:
            messages = await self._pull(batch, timeout)
        except (ServiceUnavailableError, NotFoundError, NoRespondersError):
            # The pull request found no consumer to answer it: removed on the server.
            if await self._heal():
                return []
            raise
        self._fine_at = time.time()
        return [NatsDelivery(msg) for msg in messages]

    async def _pull(self, batch: int, timeout: float) -> list[Msg]:
        if self._subscription is None:
            await self.open()
        if self._arrived:  # left from an earlier request: no need to ask
            return self._take(batch)
        self._statuses.clear()  # the ends of earlier requests say nothing now
        deadline = time.monotonic() + timeout
        await self._request(batch, deadline, no_wait=True)
        lingering = False
        while len(self._arrived) < batch:
            if not await self._wait(batch, deadline):
                break  # time is up: what came in meanwhile
            statuses, self._statuses = self._statuses, []
            if _SERVICE_UNAVAILABLE in statuses and not self._arrived:
                raise ServiceUnavailableError  # no consumer answers: heal
            if _REQUEST_TIMEOUT in statuses:
                break  # our request expired
            if _NO_MESSAGES in statuses:
                if self._arrived or lingering:
                    break  # what there was, all of it
                lingering = True  # nothing there now: a request that waits for some
                if deadline - time.monotonic() < 0.02:
                    break
                await self._request(batch, deadline, no_wait=False)
            # else a heartbeat, or the end of another request: go on waiting
        return self._take(batch)

    async def _request(self, batch: int, deadline: float, *, no_wait: bool) -> None:
        """Ask for ``batch`` messages; the broker ends the request a little before our
        deadline (a 408), so it never outlives the fetch that made it."""
        expires = max(1_000_000, int((deadline - time.monotonic() - 0.005) * 1e9))
        request: dict[str, Any] = {"batch": batch, "expires": expires}
        if no_wait:
            request["no_wait"] = True  # a 404 at once when there is nothing
        await self._transport.nc.publish(self._next, orjson.dumps(request),
                                         reply=self._inbox)

    async def _wait(self, count: int, deadline: float) -> bool:
        """Until ``count`` messages or a status reply are in hand; False at the deadline."""
        if len(self._arrived) >= count or self._statuses:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._wanted = count
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(left):
                await self._waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
            self._wanted = 0
        return True

    def _take(self, batch: int) -> list[Msg]:
        got = self._arrived[:batch]
        del self._arrived[:batch]
        return got

    async def _heal(self) -> bool:
        """Recreate a missing stream or consumer, and reconcile drifted settings; True if
        the consumer was missing and is made again.

        The new consumer starts from a little before the last fetch that worked (less
        ``ack_wait`` and a margin, for messages delivered then but not yet settled): what
        was published while it was missing is delivered, and the inbox makes the overlap
        harmless."""
        spec = self._spec
        since = datetime.fromtimestamp(self._fine_at - spec.ack_wait - HEAL_MARGIN, UTC)
        try:
            await self._transport._ensure_stream(
                spec.stream, self._transport.namespace.streams[spec.stream])
            created = await self._transport._declare_queue(spec, since=since)
        except Exception as error:
            log.debug("could not heal queue %s: %s", spec.name, error)
            return False
        if created:
            log.warning("queue %s was missing on the server; recreated it with its declared "
                        "settings, delivering from %s", spec.name, since.isoformat())
        return created

    async def pending(self) -> tuple[int, int]:
        info = await self._transport.js.consumer_info(self._spec.stream, self._spec.name)
        return info.num_pending or 0, info.num_ack_pending or 0

    async def counts(self) -> QueueCounts:
        info = await self._transport.js.consumer_info(self._spec.stream, self._spec.name)
        return QueueCounts(info.num_pending or 0, info.num_ack_pending or 0,
                           info.num_redelivered or 0)

    async def close(self) -> None:
        """Stop receiving. Messages that arrived and were never fetched are handed back at
        once (``nak``), not left to wait for their ack timer."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        left, self._arrived = self._arrived, []
        for msg in left:
            with contextlib.suppress(Exception):
                await msg.nak()


JS_API = "$JS.API"  # NatsTransport uses no JetStream domain or prefix of its own
_STATUS = "Status"
_SERVICE_UNAVAILABLE = "503"
_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"


def _status(msg: Msg) -> str | None:
    """A status reply's code (``404`` no messages, ``408`` expired, ...), None for a
    message."""
    headers = msg.headers
    return headers.get(_STATUS) if headers else None


@dataclass(slots=True)
class _Publishing:
    """One publish call's broker answers, by the message's index in the batch."""

    all_in: asyncio.Future[None]
    answers: dict[int, Msg] = field(default_factory=dict)
    expected: int = 1 << 62  # known once everything is sent


# Messages published and not yet acknowledged by the broker, at most (nats-py's own
# default window for publish_async is 4000; ours was 8192).
PUBLISH_WINDOW = 8192


def _publish_failure(answer: Msg) -> Exception | None:
    """The broker's answer to one publish: None when it stored it (or had it already),
    else the error nats-py's ``publish_async`` would have raised."""
    headers = answer.headers
    if headers and headers.get(_STATUS) == _SERVICE_UNAVAILABLE:
        return NoStreamResponseError()  # no stream listens on the subject (or its
        #                                 leader is being elected): _refusal tells which
    data = answer.data
    if b'"error"' not in data:
        return None
    try:
        error = orjson.loads(data)["error"]
        APIError.from_error(error)
    except APIError as refusal:
        return refusal
    except Exception as unreadable:
        return unreadable
    return None


def _drifted(actual: ConsumerConfig, declared: ConsumerConfig) -> list[str]:
    """The declared settings an existing consumer does not have."""
    def subjects(config: ConsumerConfig) -> list[str]:
        return sorted(config.filter_subjects or
                      ([config.filter_subject] if config.filter_subject else []))

    changed = []
    if subjects(actual) != subjects(declared):
        changed.append("subjects")
    if abs((actual.ack_wait or 0) - (declared.ack_wait or 0)) > 0.001:
        changed.append("ack_wait")
    if actual.max_ack_pending != declared.max_ack_pending:
        changed.append("max_ack_pending")
    if (actual.max_deliver or -1) != declared.max_deliver:
        changed.append("max_deliver")
    return changed


class NatsTransport(Transport):
    """``credentials``: who the connection is (None: no authentication). ``identity``: the
    one service it speaks for, if any: its answers then come to that service's own inbox
    and its outbox's lookups use that service's consumer name (``permissions.py``).
    ``url``: one server, or a cluster's servers separated by commas. ``replicas``: how many
    servers keep each stream (None: PIZZA_NATS_REPLICAS). ``namespace``: the system whose
    streams, subjects and buckets it uses (``name`` defaults to its prefix)."""

    def __init__(self, url: str, *, name: str | None = None,
                 credentials: Credentials | None = None, identity: str | None = None,
                 replicas: int | None = None, namespace: Namespace = DEFAULT) -> None:
        self.url = url
        self.namespace = namespace
        name = name or namespace.connection_name()
        self.replicas = replicas
        self.name = name
        self.credentials = credentials
        self.identity = identity
        self._refused: dict[str, float] = {}  # what the broker refused, and when we said so
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._closing = False
        self._old_server_told = False
        # The broker's answers to what we publish: one subscription per connection.
        self._answers_to = ""
        self._answers_on: NATS | None = None
        self._publishing: dict[str, _Publishing] = {}
        self._batches = 0

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise BrokerUnavailable("not connected: call start() first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerUnavailable("not connected: call start() first")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        async def disconnected() -> None:
            if self._closing:
                return
            log.warning("lost the NATS connection to %s; reconnecting", self.url)

        async def reconnected() -> None:
            log.info("reconnected to NATS at %s", self.url)

        async def error(exc: Exception) -> None:
            if "permissions violation" in str(exc).lower():  # our code asked for too much
                what = str(exc)[:300]
                if time.monotonic() - self._refused.get(what, -1e9) > 60:  # not per retry
                    self._refused[what] = time.monotonic()
                    log.warning("the broker refused %s: %s", self.identity or self.name, what)
                return
            log.debug("NATS: %s", exc)

        self._nc = await nats.connect(
            nats_servers(self.url),
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            **self._connect_options(),
        )
        self._js = self._nc.jetstream(publish_async_max_pending=8192)
        for stream, subject in self.namespace.streams.items():
            await self._patiently(f"stream {stream}",
                                  functools.partial(self._ensure_stream, stream, subject))

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again while the JetStream API answers late or not at all (up to
        START_PATIENCE s, one log line): a cluster that just formed or is electing a
        stream's leader is slow for seconds, and a start must not fail for that."""
        deadline = time.monotonic() + START_PATIENCE
        pause = 0.25
        told = False
        while True:
            try:
                return await call()
            except _SLOW as error:
                if time.monotonic() + pause > deadline:
                    raise
                if not told:
                    told = True
                    log.warning("%s: the broker answers late (%s); retrying for up to "
                                "%.0f s", what, type(error).__name__, START_PATIENCE)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    def bucket_replicas(self) -> int:
        """The replicas a key-value bucket is made with: the streams' (PIZZA_NATS_REPLICAS
        unless given), so the registry and the keys of personal data outlive a server."""
        return self.replicas if self.replicas is not None else declared_replicas()

    def _connect_options(self) -> dict[str, Any]:
        options = self.credentials.connect_options() if self.credentials else {}
        if self.identity is not None:
            options["inbox_prefix"] = self.namespace.inbox_prefix(self.identity)
        return options

    async def _ensure_stream(self, name: str, subject: str) -> None:
        """Create the stream, or bring what we declare (its subjects, the duplicate window,
        its retention: max age and max bytes, and its replicas; ``base.retention``) back
        where it drifted; its other settings are the operator's. Raising the replicas of
        a stream on a cluster copies it to more servers, its messages kept. Replicas are
        only ever raised here: a process started without PIZZA_NATS_REPLICAS (a tool, a
        forgotten variable) must not take a cluster's copies away; lowering them is an
        operator's deliberate act (``nats stream edit --replicas``)."""
        keep = retention(name, self.replicas)
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            await self._configure_stream(StreamConfig(
                name=name, subjects=[subject], duplicate_window=keep.duplicate_window,
                max_age=keep.max_age, max_bytes=keep.max_bytes,
                num_replicas=keep.replicas), create=True)
            return
        config = info.config
        replicas = max(keep.replicas, config.num_replicas or 1)
        if (config.subjects != [subject]
                or abs((config.duplicate_window or 0) - keep.duplicate_window) > 0.001
                or abs((config.max_age or 0) - keep.max_age) > 0.001
                or (config.max_bytes or -1) != keep.max_bytes
                or (config.num_replicas or 1) != replicas):
            log.info("stream %s: applying the declared subjects, duplicate window "
                     "(%.0f s), retention (max age %.0f s, max bytes %d) and replicas "
                     "(%d, was %d)", name, keep.duplicate_window, keep.max_age,
                     keep.max_bytes, replicas, config.num_replicas or 1)
            config.subjects = [subject]
            config.duplicate_window = keep.duplicate_window
            config.max_age = keep.max_age
            config.max_bytes = keep.max_bytes
            config.num_replicas = replicas
            await self._configure_stream(config, create=False)

    async def _configure_stream(self, config: StreamConfig, *, create: bool) -> None:
        """Add or update a stream. A server that cannot reserve its max bytes (a small
        disk: JetStream reserves a stream's limit up front) gets the stream without a
        byte limit, its max age still kept, and says so in one line."""
        apply = self.js.add_stream if create else self.js.update_stream
        try:
            await apply(config)
        except APIError as error:
            if error.err_code == 10074:  # replicas > 1 on a server that is not clustered
                raise RuntimeError(
                    f"stream {config.name}: {config.num_replicas} replicas need a NATS "
                    f"cluster, and {self.url[:200]} is a single server; set "
                    f"PIZZA_NATS_REPLICAS=1 or list a cluster's servers") from None
            if error.err_code != 10047 or config.max_bytes in (None, -1):
                raise
            log.warning("stream %s: the server cannot reserve %d bytes (%s); keeping it "
                        "without a byte limit, by age only", config.name, config.max_bytes,
                        error.description)
            config.max_bytes = -1
            await apply(config)

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):  # a broker that is gone cannot drain
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None

    async def publish(self, messages: Sequence[Outgoing],
                      timeout: float = 5.0) -> list[str | None]:
        """Send the batch and report each message's fate from the front (see
        ``Transport.publish``). Every message goes out with a reply subject of its own
        (``<inbox>.<batch>.<index>``), the broker's acks arrive on one subscription made
        once per connection, and the batch waits once for all of them (at most
        ``PUBLISH_WINDOW`` unanswered at a time). nats-py's ``publish_async`` does the
        same per message with a semaphore, a random token, a future and a parsed ack
        object each, which cost more CPU than the rest of the relay."""
        if not messages or not self.connected:
            return []
        nc = self.nc
        limit = min(MAX_MESSAGE_BYTES, nc.max_payload - 4096)
        namespace = self.namespace
        refused: dict[int, str] = {}
        self._batches += 1
        token = str(self._batches)
        inbox = f"{await self._answers_inbox()}.{token}"
        batch = _Publishing(asyncio.get_running_loop().create_future())
        answers = batch.answers
        sent = 0
        deadline = time.monotonic() + timeout
        self._publishing[token] = batch
        try:
            try:
                for index, message in enumerate(messages):
                    # Judged before sending: the broker would refuse a bad subject or a
                    # payload over the limit (nats-py raises on them) for good.
                    reason = unpublishable(message.subject, message.payload, limit,
                                           namespace)
                    if reason is not None:
                        refused[index] = reason
                        continue
                    if sent - len(answers) >= PUBLISH_WINDOW:
                        await self._answers_in(answers, sent, deadline)
                    await nc.publish(message.subject, message.payload,
                                     reply=f"{inbox}.{index}", headers=message.headers())
                    sent += 1
            except Exception as error:  # connection lost mid-batch: what went out may be
                log.warning("publish interrupted after %d of %d: %s",  # acknowledged
                            sent + len(refused), len(messages), error)
            batch.expected = sent
            if len(answers) < sent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await batch.all_in
        finally:
            del self._publishing[token]
        outcomes: list[str | None] = []
        for index in range(len(messages)):
            if index in refused:
                outcomes.append(refused[index])
                continue
            answer = answers.get(index)
            if answer is None:
                break  # not sent, or no answer in time: in doubt, the relay tries again
            failure = _publish_failure(answer)
            if failure is None:
                outcomes.append(None)
                continue
            reason = await self._refusal(messages[index].subject, failure)
            if reason is None:
                break  # in doubt: the relay tries again later
            outcomes.append(reason)
        return outcomes

    async def _answers_inbox(self) -> str:
        """The inbox under which the broker answers our publishes (``<inbox>.<batch>.<n>``),
        subscribed once per connection (nats-py subscribes it again after a reconnect)."""
        nc = self.nc
        if self._answers_on is not nc:
            self._answers_to = nc.new_inbox()
            await nc.subscribe(f"{self._answers_to}.>", cb=self._answered)
            self._answers_on = nc
        return self._answers_to

    async def _answered(self, msg: Msg) -> None:
        token, _, index = msg.subject[len(self._answers_to) + 1:].partition(".")
        batch = self._publishing.get(token)
        if batch is None:  # a batch that gave up waiting: its rows are in doubt anyway
            return
        batch.answers[int(index)] = msg
        if len(batch.answers) >= batch.expected and not batch.all_in.done():
            batch.all_in.set_result(None)

    @staticmethod
    async def _answers_in(answers: dict[int, Msg], sent: int, deadline: float) -> None:
        """Wait (asleep, briefly at a time) until fewer than PUBLISH_WINDOW are unanswered."""
        while sent - len(answers) >= PUBLISH_WINDOW:
            if time.monotonic() > deadline:
                raise NatsTimeout
            await asyncio.sleep(0.001)

    async def _refusal(self, subject: str, error: BaseException) -> str | None:
        """Is this publish error permanent? "No responders" also happens while a stream's
        leader is being elected, so ask the server whether any stream holds the subject."""
        if isinstance(error, (NoStreamResponseError, NoRespondersError)):
            try:
                await self.js.find_stream_name_by_subject(subject)
            except NotFoundError:
                return f"no stream holds subject {subject[:120]!r}"
            except Exception:
                return None
            return None
        if isinstance(error, APIError) and error.code == 400:
            return f"refused by the broker: {str(error)[:300]}"
        return None

    async def stored_ids(self, messages: Sequence[Outgoing], since: datetime) -> set[str]:
        """Read the headers (only) of what the messages' subjects got since ``since``,
        through a short-lived consumer per stream, and keep the ids asked about."""
        wanted = {m.message_id for m in messages}
        by_stream: dict[str, set[str]] = {}
        for message in messages:
            by_stream.setdefault(self.namespace.stream_for(message.subject),
                                 set()).add(message.subject)
        found: set[str] = set()
        # A service's own name, so the broker can allow exactly it (one relay of a service
        # looks at a time); a shared connection's lookups each get a name of their own.
        name = (lookup_consumer(self.identity) if self.identity is not None
                else uuid.uuid4().hex)
        for stream, subjects in by_stream.items():
            config = ConsumerConfig(
                name=name, deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since,
                ack_policy=AckPolicy.NONE, headers_only=True, filter_subjects=sorted(subjects),
                inactive_threshold=30.0, mem_storage=True)
            with contextlib.suppress(NotFoundError):  # left by a process that died looking
                await self.js.delete_consumer(stream, name)
            await self.js.add_consumer(stream, config)
            subscription = await self.js.pull_subscribe_bind(name, stream=stream)
            try:
                while True:
                    try:
                        batch = await subscription.fetch(1000, timeout=1.0)
                    except (TimeoutError, NatsTimeout):
                        break
                    for msg in batch:
                        message_id = (msg.headers or {}).get("Nats-Msg-Id")
                        if message_id in wanted:
                            found.add(message_id)
                    if not batch or batch[-1].metadata.num_pending == 0:
                        break
            finally:
                with contextlib.suppress(Exception):
                    await self.js.delete_consumer(stream, name)
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        return found

    async def provision(self, spec: QueueSpec) -> None:
        spec = self._own(spec)
        await self._patiently(f"queue {spec.name}", lambda: self._declare_queue(spec))

    async def queue(self, spec: QueueSpec) -> Queue:
        spec = self._own(spec)
        await self._patiently(f"queue {spec.name}", lambda: self._declare_queue(spec))
        queue = NatsQueue(self, spec)
        await queue.open()
        return queue

    def _own(self, spec: QueueSpec) -> QueueSpec:
        """``spec`` in our namespace (``Transport.local``); ValueError if it takes another
        system's subject."""
        spec = self.local(spec)
        self.namespace.stream_for(spec.subject)
        return spec

    def _subjects(self, spec: QueueSpec) -> list[str]:
        """The queue's subject and its own retry subject; a server older than 2.10 knows
        one filter subject only (its dead letters' retries then reach no one)."""
        version = str(self.nc._server_info.get("version", "2.10"))
        if tuple(int(p) for p in version.split("-")[0].split(".")[:2]) < (2, 10):
            if not self._old_server_told:
                self._old_server_told = True
                log.warning("nats-server %s has no multi-subject consumers; retried dead "
                            "letters will not be delivered (use 2.10 or later)", version)
            return [spec.subject]
        return spec.subjects

    def _consumer_config(self, spec: QueueSpec) -> ConsumerConfig:
        subjects = self._subjects(spec)
        return ConsumerConfig(
            durable_name=spec.name,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_ack_pending=spec.max_in_flight,
            deliver_policy=DeliverPolicy.ALL if spec.start == "all" else DeliverPolicy.NEW,
            max_deliver=-1,  # the kernel counts attempts and dead-letters, not the broker
        )

    async def _declare_queue(self, spec: QueueSpec, *, since: datetime | None = None) -> bool:
        """Create the durable consumer (from ``since`` if given), or reconcile an existing
        one with what the code declares; True if it was created."""
        config = self._consumer_config(spec)
        try:
            info = await self.js.consumer_info(spec.stream, spec.name)
        except NotFoundError:
            if since is not None:
                config.deliver_policy = DeliverPolicy.BY_START_TIME
                config.opt_start_time = since
            await self.js.add_consumer(spec.stream, config)
            return True
        changed = _drifted(info.config, config)
        if changed:
            # Where it delivers from cannot change on the server: keep it.
            config.deliver_policy = info.config.deliver_policy
            config.opt_start_seq = info.config.opt_start_seq
            config.opt_start_time = info.config.opt_start_time
            log.info("queue %s: applying the declared %s", spec.name, ", ".join(changed))
            await self.js.add_consumer(spec.stream, config)
        return False

    async def dead_letter(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        try:
            await self.js.publish(subject, payload, headers=headers, timeout=5.0)
        except Exception as error:
            raise BrokerUnavailable(f"could not store dead letter: {error}") from error

    async def stored_by_subject(self, stream: str, subjects: str) -> dict[str, int]:
        info = await self.js.stream_info(stream, subjects_filter=subjects)
        return dict(info.state.subjects or {})

    async def delete_queue(self, spec: QueueSpec) -> None:
        spec = self.local(spec)
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(spec.stream, spec.name)

    async def _bucket(self, bucket: str, *, create: bool) -> KeyValue | None:
        try:
            return await self.js.key_value(bucket)
        except (NotFoundError, BucketNotFoundError):
            if not create:
                return None
            return await self.js.create_key_value(KeyValueConfig(
                bucket=bucket, history=1, replicas=self.bucket_replicas()))

    async def kv_put(self, bucket: str, key: str, value: bytes) -> None:
        async def put() -> None:
            kv = await self._bucket(bucket, create=True)
            assert kv is not None
            await kv.put(key, value)

        await self._patiently(f"bucket {bucket}", put)

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        kv = await self._bucket(bucket, create=False)
        if kv is None:
            return {}
        # The bucket's stream lists its keys exactly; nats-py's kv.keys() (a watcher)
        # sometimes returned before every key had arrived.
        prefix = f"$KV.{bucket}."
        info = await self.js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
        entries: dict[str, bytes] = {}
        for subject in (info.state.subjects or {}):
            key = subject.removeprefix(prefix)
            with contextlib.suppress(KeyNotFoundError):
                entry = await kv.get(key)
                if entry.value:
                    entries[key] = entry.value
        return entries

    async def kv_delete(self, bucket: str, key: str) -> None:
        kv = await self._bucket(bucket, create=False)
        if kv is not None:
            await kv.purge(key)
