"""An in-process stand-in for JetStream, for fast unit tests ONLY.

Never use it in a running system: nothing survives the process, and nothing is shared
between processes. It models what the kernel relies on: its namespace's streams with
sequence numbers, de-duplication on ``Nats-Msg-Id`` within the duplicate window, durable
pull queues (one cursor per name, shared by every handle on it) with a subject filter,
an in-flight limit, ``ack_wait`` and ``nak`` redelivery with attempt counts, and an
outage switch (``go_down()`` / ``come_back()``). ``start()`` is not required.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pizza.eventing.catalog import subject_matches
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.transport.base import (
    DUPLICATE_WINDOW,
    BrokerUnavailable,
    Delivery,
    Outgoing,
    Queue,
    QueueCounts,
    QueueSpec,
    Transport,
    unpublishable,
)


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class _Stream:
    messages: list[_Stored] = field(default_factory=list)  # messages[i].seq == i + 1
    seen: dict[str, float] = field(default_factory=dict)  # Nats-Msg-Id -> stored at


@dataclass(slots=True)
class _Pending:
    attempt: int  # deliveries so far
    due: float  # when it may be delivered again (ack_wait expiry or nak delay)


class _Consumer:
    """One durable: a cursor into its stream and the messages delivered but not acked."""

    def __init__(self, spec: QueueSpec, stream: _Stream, wake: Callable[[], None]) -> None:
        self.spec = spec
        self.stream = stream
        self.wake = wake  # an ack, nak or term may let a waiting fetch go on
        self.next_seq = 1 if spec.start == "all" else len(stream.messages) + 1
        self.pending: dict[int, _Pending] = {}  # stream seq -> state

    def matches(self, subject: str) -> bool:
        """Its subject, or its own retry subject (as JetStream's filter_subjects)."""
        return any(subject_matches(pattern, subject) for pattern in self.spec.subjects)

    def _deliver(self, stored: _Stored, state: _Pending, now: float) -> MemoryDelivery:
        state.attempt += 1
        state.due = now + self.spec.ack_wait
        return MemoryDelivery(self, stored, state.attempt)

    def take(self, batch: int) -> list[Delivery]:
        now = time.monotonic()
        out: list[Delivery] = []
        for seq in sorted(self.pending):  # redeliveries first, oldest first
            state = self.pending[seq]
            if len(out) < batch and state.due <= now:
                out.append(self._deliver(self.stream.messages[seq - 1], state, now))
        room = min(batch - len(out), self.spec.max_in_flight - len(self.pending))
        while room > 0 and self.next_seq <= len(self.stream.messages):
            stored = self.stream.messages[self.next_seq - 1]
            self.next_seq += 1
            if self.matches(stored.subject):
                state = self.pending[stored.seq] = _Pending(attempt=0, due=now)
                out.append(self._deliver(stored, state, now))
                room -= 1
        return out

    def next_due(self) -> float | None:
        return min((state.due for state in self.pending.values()), default=None)

    def waiting(self) -> int:
        rest = self.stream.messages[self.next_seq - 1 :]
        return sum(self.matches(m.subject) for m in rest)


class MemoryDelivery(Delivery):
    def __init__(self, consumer: _Consumer, stored: _Stored, attempt: int) -> None:
        self._consumer = consumer
        self._seq = stored.seq
        self.subject = stored.subject
        self.data = stored.data
        self.headers = dict(stored.headers)
        self.attempt = attempt

    async def ack(self) -> None:
        self._consumer.pending.pop(self._seq, None)
        self._consumer.wake()

    async def nak(self, delay: float) -> None:
        state = self._consumer.pending.get(self._seq)
        if state is not None:
            state.due = time.monotonic() + max(delay, 0.0)
            self._consumer.wake()

    async def term(self) -> None:
        self._consumer.pending.pop(self._seq, None)
        self._consumer.wake()

    async def in_progress(self) -> None:
        state = self._consumer.pending.get(self._seq)
        if state is not None:
            state.due = time.monotonic() + self._consumer.spec.ack_wait


class MemoryQueue(Queue):
    def __init__(self, transport: MemoryTransport, consumer: _Consumer) -> None:
        self._transport = transport
        self._consumer = consumer

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            changed = self._transport._changed  # taken before looking: no missed wake-up
            if not self._transport.broker_down and batch > 0:
                found = self._consumer.take(batch)
                if found:
                    return found
            now = time.monotonic()
            if now >= deadline:
                return []
            wait = deadline - now
            due = self._consumer.next_due()
            if due is not None and not self._transport.broker_down:
                wait = min(wait, max(due - now, 0.001))
            with contextlib.suppress(TimeoutError):  # not wait_for: it can eat a cancel
                async with asyncio.timeout(wait):
                    await changed.wait()

    async def pending(self) -> tuple[int, int]:
        return self._consumer.waiting(), len(self._consumer.pending)

    async def counts(self) -> QueueCounts:
        pending = self._consumer.pending.values()
        return QueueCounts(self._consumer.waiting(), len(pending),
                           sum(1 for state in pending if state.attempt > 1))


class MemoryTransport(Transport):
    """JetStream's semantics in a dict, for fast unit tests only (see the module doc)."""

    def __init__(self, *, duplicate_window: float = DUPLICATE_WINDOW,
                 namespace: Namespace = DEFAULT) -> None:
        self.url = "memory://"
        self.namespace = namespace
        self.duplicate_window = duplicate_window
        self.broker_down = False
        self._streams = {name: _Stream() for name in namespace.streams}
        self._consumers: dict[tuple[str, str], _Consumer] = {}
        self._changed = asyncio.Event()
        self._buckets: dict[str, dict[str, bytes]] = {}

    def _wake(self) -> None:
        """Wake every fetch waiting for a message (or for the broker to come back)."""
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def connected(self) -> bool:
        return not self.broker_down

    def go_down(self) -> None:
        self.broker_down = True

    def come_back(self) -> None:
        self.broker_down = False
        self._wake()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._wake()

    def _store(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        stream = self._streams[self.namespace.stream_for(subject)]
        now = time.monotonic()
        message_id = headers.get("Nats-Msg-Id")
        if message_id is not None:
            stored_at = stream.seen.get(message_id)
            if stored_at is not None and now - stored_at < self.duplicate_window:
                return  # a duplicate: dropped, yet acknowledged, as JetStream does
            stream.seen[message_id] = now
        seq = len(stream.messages) + 1
        stream.messages.append(_Stored(seq, subject, data, dict(headers)))

    async def publish(self, messages: Sequence[Outgoing],
                      timeout: float = 5.0) -> list[str | None]:
        outcomes: list[str | None] = []
        for message in messages:
            if self.broker_down:
                break
            reason = unpublishable(message.subject, message.payload,
                                   namespace=self.namespace)
            if reason is None:
                self._store(message.subject, message.payload, message.headers())
            outcomes.append(reason)
        if None in outcomes:
            self._wake()
        return outcomes

    async def stored_ids(self, messages: Sequence[Outgoing], since: datetime) -> set[str]:
        wanted = {m.message_id for m in messages}
        return {m.headers.get("Nats-Msg-Id", "") for stream in self._streams.values()
                for m in stream.messages} & wanted

    async def queue(self, spec: QueueSpec) -> Queue:
        if self.broker_down:
            raise BrokerUnavailable("memory broker is down")
        spec = self.local(spec)
        self.namespace.stream_for(spec.subject)  # ValueError: not this system's
        key = (spec.stream, spec.name)
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = _Consumer(spec, self._streams[spec.stream], self._wake)
            self._consumers[key] = consumer
        elif consumer.spec != replace(spec, start=consumer.spec.start):
            # As nats.py: apply the declared settings; where it reads from stays.
            consumer.spec = replace(spec, start=consumer.spec.start)
        return MemoryQueue(self, consumer)

    async def dead_letter(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if self.broker_down:
            raise BrokerUnavailable("could not store dead letter: memory broker is down")
        if self.namespace.stream_for(subject) != self.namespace.dead_letters_stream:
            raise ValueError(f"{subject!r} is not a dead-letter subject")
        self._store(subject, payload, headers)
        self._wake()

    async def kv_put(self, bucket: str, key: str, value: bytes) -> None:
        self._buckets.setdefault(bucket, {})[key] = value

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        return dict(self._buckets.get(bucket, {}))

    async def kv_delete(self, bucket: str, key: str) -> None:
        self._buckets.get(bucket, {}).pop(key, None)

    async def stored_by_subject(self, stream: str, subjects: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stored in self._streams[stream].messages:
            if subject_matches(subjects, stored.subject):
                counts[stored.subject] = counts.get(stored.subject, 0) + 1
        return counts

    async def delete_queue(self, spec: QueueSpec) -> None:
        spec = self.local(spec)
        self._consumers.pop((spec.stream, spec.name), None)

    def messages(self, stream_or_subject_prefix: str) -> list[tuple[str, bytes, dict[str, str]]]:
        """For tests: what a stream (by name) or a subject prefix holds, in order."""
        if stream_or_subject_prefix in self._streams:
            found = self._streams[stream_or_subject_prefix].messages
        else:
            found = [
                m
                for stream in self._streams.values()
                for m in stream.messages
                if m.subject.startswith(stream_or_subject_prefix)
            ]
        return [(m.subject, m.data, dict(m.headers)) for m in found]
