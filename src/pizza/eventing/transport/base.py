"""What the kernel needs from a broker: publish in order with acks, and durable pull queues.

JetStream (nats.py) is the real one; memory.py is a stand-in for fast unit tests only.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pizza.eventing.namespace import DEFAULT, Namespace, stream_of, subject_is_valid

# One stream per kind of traffic: retention and limits differ, and dead letters must
# never be consumed by the consumers that produced them. A namespace names its own
# (``Namespace.streams``); these are the default namespace's, for code outside the kernel.
STREAMS: dict[str, str] = dict(DEFAULT.streams)

# Seconds within which the broker drops a re-publish of the same message id: longer than
# any relay retry, so a crash between publish and outbox delete never duplicates.
DUPLICATE_WINDOW = 120.0

# How long each stream keeps a message and how much it holds at most (the oldest goes
# first), by default; PIZZA_<STREAM>_MAX_AGE and PIZZA_<STREAM>_MAX_BYTES change them
# (e.g. PIZZA_EVENTS_MAX_AGE=30d, PIZZA_DEADLETTERS_MAX_BYTES=2G; 0 is no limit). The
# README says why each: events long enough to rebuild a read model from history,
# commands and replies long enough to outlast a consumer's outage, dead letters long
# enough for an operator to act on them. The settings are named by the kind of stream,
# whatever the namespace (ACME_EVENTS keeps to PIZZA_EVENTS_MAX_AGE too).
RETENTION_DEFAULTS: dict[str, tuple[str, str]] = {
    "PIZZA_EVENTS": ("90d", "4G"),
    "PIZZA_COMMANDS": ("3d", "512M"),
    "PIZZA_REPLIES": ("3d", "512M"),
    "PIZZA_DEADLETTERS": ("30d", "512M"),
}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class Retention:
    """What a stream is made with and brought back to at every start."""

    max_age: float  # seconds; 0: kept for ever
    max_bytes: int  # -1: no limit
    duplicate_window: float = DUPLICATE_WINDOW  # seconds
    replicas: int = 1  # copies on a cluster's servers (JetStream's num_replicas)


def _amount(name: str, raw: str, units: dict[str, int], what: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]?)[iI]?[bB]?\s*", raw)
    if match is None or match.group(2).lower() not in units:
        raise ValueError(f"{name}={raw!r} is not {what}")
    return float(match.group(1)) * units[match.group(2).lower()]


def duplicate_window() -> float:
    """PIZZA_NATS_DUPLICATE_WINDOW (default 120 s): never shorter, since the outbox looks a
    row up on the stream only once it is older than that (``outbox.STALE_AFTER``)."""
    raw = os.environ.get("PIZZA_NATS_DUPLICATE_WINDOW") or ""
    window = (_amount("PIZZA_NATS_DUPLICATE_WINDOW", raw, _UNITS, "a duration such as 2m")
              if raw else DUPLICATE_WINDOW)
    if window < DUPLICATE_WINDOW:
        raise ValueError(f"PIZZA_NATS_DUPLICATE_WINDOW must be at least "
                         f"{DUPLICATE_WINDOW:.0f} s")
    return window


def replicas() -> int:
    """PIZZA_NATS_REPLICAS (default 1): how many servers of a cluster keep each stream; 3
    survives one server's loss, 5 two. The embedded broker is one server: always 1."""
    raw = (os.environ.get("PIZZA_NATS_REPLICAS") or "1").strip()
    if raw not in ("1", "2", "3", "4", "5"):
        raise ValueError(f"PIZZA_NATS_REPLICAS={raw[:20]!r} is not 1 to 5 (JetStream's range)")
    return int(raw)


def retention(stream: str, copies: int | None = None) -> Retention:
    """The declared settings of one of a namespace's streams (read from the environment
    now; by its kind: ``ACME_EVENTS`` as ``PIZZA_EVENTS``); ``copies`` overrides
    PIZZA_NATS_REPLICAS (the embedded broker: 1)."""
    setting = f"PIZZA_{stream.rpartition('_')[2]}"
    if setting not in RETENTION_DEFAULTS:
        raise KeyError(stream)
    age_default, bytes_default = RETENTION_DEFAULTS[setting]
    age_name, bytes_name = f"{setting}_MAX_AGE", f"{setting}_MAX_BYTES"
    max_age = _amount(age_name, os.environ.get(age_name) or age_default, _UNITS,
                      "a duration such as 3600, 12h or 30d")
    size = _amount(bytes_name, os.environ.get(bytes_name) or bytes_default, _SIZES,
                   "a size such as 1048576, 512M or 4G")
    window = duplicate_window()
    if 0 < max_age < window:
        raise ValueError(f"{age_name} must be 0 (no limit) or at least the duplicate "
                         f"window, {window:.0f} s")
    return Retention(max_age, int(size) if size > 0 else -1, window,
                     replicas() if copies is None else copies)

# Header names carried by dead letters, next to the original payload: the default
# namespace's (a namespace names its own: ``Namespace.dead_reason``, ...).
DEAD_REASON = DEFAULT.dead_reason
DEAD_ERROR = DEFAULT.dead_error
DEAD_ATTEMPTS = DEFAULT.dead_attempts
DEAD_SUBJECT = DEFAULT.dead_subject
DEAD_CONSUMER = DEFAULT.dead_consumer


def retry_subject(subject: str, consumer: str) -> str:
    """Where a dead letter's retry goes so that only the consumer that failed gets it.

    The retry of a message first published to ``subject`` that consumer ``consumer``
    dead-lettered is published to ``<subject>.retry.<consumer>``: the same stream (its
    ``pizza.<kind>.>`` wildcard covers it), and each durable consumer also takes its own
    retry subject (``QueueSpec.subjects``), so no other consumer sees it. The consumer
    handles it as the original (same message id, same inbox), so a second copy has no
    effect. Its ``Nats-Msg-Id`` is ``<id>.retry.<consumer>.<dead-letter stream seq>``.
    """
    return f"{subject}.retry.{consumer}"


def stream_for(subject: str) -> str:
    """The stream that holds a subject of any namespace's (``pizza.events.x``:
    ``PIZZA_EVENTS``; ``acme.events.x``: ``ACME_EVENTS``), or ValueError."""
    return stream_of(subject)


class BrokerUnavailable(ConnectionError):
    """The broker cannot take messages now; the outbox keeps them until it can."""


# The largest message we hand the broker (NATS's default max_payload is 1 MiB; headers
# count too, so leave them room). Checked when a message is written, and again by the
# relay against the connected server's own limit.
MAX_MESSAGE_BYTES = 1024 * 1024 - 4096


def unpublishable(subject: str, payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES,
                  namespace: Namespace = DEFAULT) -> str | None:
    """Why the broker would never store this message, or None if it could.

    A permanent reason, judged before sending: retrying cannot fix a subject no stream
    of ``namespace`` holds or a payload over the limit, so the relay moves such a row
    aside instead of letting it block every row behind it.
    """
    if not subject_is_valid(subject):
        return f"not a valid subject: {subject[:120]!r}"
    try:
        namespace.stream_for(subject)
    except ValueError:
        return f"no stream holds subject {subject[:120]!r}"
    if len(payload) > max_bytes:
        return f"payload of {len(payload)} bytes is over the limit of {max_bytes}"
    return None


@dataclass(slots=True)
class Outgoing:
    """One message ready to go: encoded once, when it was written to the outbox."""

    message_id: str
    subject: str
    payload: bytes
    traceparent: str | None = None
    seq: int = 0

    def headers(self) -> dict[str, str]:
        headers = {"Nats-Msg-Id": self.message_id}
        if self.traceparent:
            headers["traceparent"] = self.traceparent
        return headers


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A subscriber's own durable queue in front of its handler."""

    name: str  # durable consumer name, unique in the stream
    # The one subject it takes (replies: the service's reply subject), in its namespace.
    # One in the default namespace's terms (a declaration's) is taken as the transport's
    # namespace's when the queue is made (``Transport.local``).
    subject: str
    max_in_flight: int = 64  # delivered but not yet acknowledged, across all processes
    ack_wait: float = 30.0
    start: Literal["new", "all"] = "new"  # where a queue created now begins

    @property
    def stream(self) -> str:
        """Its stream, in the namespace its subject names."""
        return stream_for(self.subject)

    @property
    def subjects(self) -> list[str]:
        """What the queue takes: its subject, and the retries of its own dead letters."""
        return [self.subject, retry_subject(self.subject, self.name)]


class Delivery(abc.ABC):
    """One received message, and the broker's verbs for it."""

    subject: str
    data: bytes
    attempt: int  # 1 on first delivery
    headers: dict[str, str]

    @abc.abstractmethod
    async def ack(self) -> None: ...

    @abc.abstractmethod
    async def nak(self, delay: float) -> None: ...

    @abc.abstractmethod
    async def term(self) -> None: ...

    async def in_progress(self) -> None:  # noqa: B027 (a broker without it redelivers)
        """Still being worked on: restart the ack timer, without a redelivery."""


@dataclass(frozen=True, slots=True)
class QueueCounts:
    waiting: int  # not yet delivered
    in_flight: int  # delivered, not yet acknowledged
    redelivered: int | None  # delivered more than once and not yet settled; None: unknown


class Queue(abc.ABC):
    @abc.abstractmethod
    async def fetch(self, batch: int, timeout: float) -> list[Delivery]: ...

    @abc.abstractmethod
    async def pending(self) -> tuple[int, int]:
        """(messages waiting, messages delivered and not yet acknowledged)."""

    async def counts(self) -> QueueCounts:
        """What ``pending`` says, and the redelivered count where the broker keeps one."""
        waiting, in_flight = await self.pending()
        return QueueCounts(waiting, in_flight, None)

    async def close(self) -> None:  # noqa: B027 (optional)
        pass


class Transport(abc.ABC):
    url: str = ""
    # Whose streams, subjects and buckets it uses on the broker (one system's).
    namespace: Namespace = DEFAULT

    def local(self, spec: QueueSpec) -> QueueSpec:
        """``spec`` in this transport's namespace: a subject declared in the default
        namespace's terms (a subscription's, a tap's) becomes this namespace's."""
        subject = self.namespace.local(spec.subject)
        return spec if subject == spec.subject else replace(spec, subject=subject)

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and make sure the streams exist."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Outgoing],
                      timeout: float = 5.0) -> list[str | None]:
        """Publish in order; say what became of each message, from the front.

        One entry per message the broker has settled, in order, stopping at the first
        that is still in doubt (broker away, no answer in time): ``None`` when the broker
        stored it (or dropped it as a duplicate), else the reason it never will
        (``unpublishable``). A message after one in doubt is not reported even if stored:
        the relay sends it again and the duplicate window drops the copy, which keeps the
        order.
        """

    @abc.abstractmethod
    async def stored_ids(self, messages: Sequence[Outgoing], since: datetime) -> set[str]:
        """Which of these messages the broker stored at or after ``since`` (by
        ``Nats-Msg-Id``): how a relay finds out, after longer than the duplicate window,
        what it had published before it stopped."""

    @abc.abstractmethod
    async def queue(self, spec: QueueSpec) -> Queue:
        """Create (or join) a durable queue and return a handle to pull from it."""

    async def provision(self, spec: QueueSpec) -> None:
        """Create the durable queue (or reconcile it) without pulling from it: from now
        on nothing published to its subject is missed (``eventing/topology.py``)."""
        await (await self.queue(spec)).close()

    @abc.abstractmethod
    async def dead_letter(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Store a message that will not be handled, with why (headers)."""

    # -- a small key-value store on the broker (the live registry of who uses what) -------

    @abc.abstractmethod
    async def kv_put(self, bucket: str, key: str, value: bytes) -> None: ...

    @abc.abstractmethod
    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        """Every live key and its value (empty when the bucket does not exist)."""

    @abc.abstractmethod
    async def kv_delete(self, bucket: str, key: str) -> None: ...

    @abc.abstractmethod
    async def delete_queue(self, spec: QueueSpec) -> None:
        """Remove a durable queue (a replay recreates it from the start of the stream)."""

    async def stored_by_subject(self, stream: str, subjects: str) -> dict[str, int]:
        """How many messages ``stream`` holds on each subject matching ``subjects``."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        return True
