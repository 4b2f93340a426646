"""What the kernel counts and measures, in Prometheus terms (``GET /metrics``).

One :class:`RuntimeMetrics` per Runtime, with a registry of its own (never the global
default registry), so several systems in one interpreter (the tests) never share a
series. Two kinds of numbers:

* **Counted as it happens**, by a few hooks in the consumer: messages handled, given
  back for another attempt, dead-lettered (by reason), and each handler's duration.
  Created with their labels when a queue starts, so a series is there (at 0) before its
  first event.
* **Asked for at scrape time**, from the broker and the databases: what a queue has
  waiting, in flight and redelivered, the outbox backlog and the age of its oldest row,
  the dead letters stored per queue. All are asked at once, and whatever has not answered
  within ``SCRAPE_WAIT`` gives no sample: a dependency that is away is missing from the
  scrape (``absent()`` in an alert), never a made-up zero, and never a slow scrape.

Read straight from memory at scrape time: a circuit breaker's state (what a service
declares in ``Service.breakers``), the event loop's lag, the outbox's published count.

The names follow Prometheus's conventions: ``pizza_`` prefix, base units (seconds),
``_total`` on counters.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pizza.eventing.transport.base import QueueCounts

if TYPE_CHECKING:
    from pizza.eventing.host import Runtime, ServiceHost

SCRAPE_WAIT = 0.5  # seconds: a dependency that is away never holds a scrape up longer
DEAD_REASONS = ("malformed", "rejected", "handler-failed")
BREAKER_STATES = ("closed", "half-open", "open")
# Handlers take from well under a millisecond (a row or two) to seconds (a SaaS call).
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)


class QueueMetrics:
    """One queue's counters and handler-time histogram, which the consumer's hooks feed.

    Plain numbers, not ``prometheus_client`` metric objects: the hooks run per message on
    the event loop's thread, where a lock per increment (the library's) would cost more
    than the rest of the bookkeeping; the scrape, on the same thread, reads them as they
    are and hands them to the library as metric families.
    """

    __slots__ = ("buckets", "dead_lettered_by", "handled_count", "queue", "retried_count",
                 "seconds_sum", "service")

    def __init__(self, service: str, queue: str) -> None:
        self.service, self.queue = service, queue
        self.handled_count = 0
        self.retried_count = 0
        self.dead_lettered_by = dict.fromkeys(DEAD_REASONS, 0)
        self.buckets = [0] * (len(HANDLER_BUCKETS) + 1)  # the last: above every bound
        self.seconds_sum = 0.0

    def handled(self, seconds: Sequence[float]) -> None:
        """A batch committed: each new message's handler took ``seconds[i]``."""
        self.handled_count += len(seconds)
        for spent in seconds:
            self.buckets[bisect_left(HANDLER_BUCKETS, spent)] += 1
            self.seconds_sum += spent

    def retried(self) -> None:
        self.retried_count += 1

    def dead_lettered(self, reason: str) -> None:
        self.dead_lettered_by[reason] = self.dead_lettered_by.get(reason, 0) + 1

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        """Prometheus's ``le`` buckets: how many took at most each bound."""
        found: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*HANDLER_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            found.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return found


@dataclass
class _Snapshot:
    """What the broker and databases answered within the deadline of one scrape."""

    queues: dict[tuple[str, str], QueueCounts] = field(default_factory=dict)
    outboxes: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, int]] = field(default_factory=dict)  # service: by subject
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class RuntimeMetrics(Collector):
    """The kernel's metrics for one Runtime, in ``registry`` (its own by default)."""

    def __init__(self, runtime: Runtime, registry: CollectorRegistry | None = None) -> None:
        self.runtime = runtime
        self.registry = registry or CollectorRegistry()
        self._queues: dict[tuple[str, str], QueueMetrics] = {}
        self._snapshot = _Snapshot()
        self.registry.register(self)

    def watch(self, host: ServiceHost) -> None:
        """Give each of a host's consumers its counters (before the host starts); a
        queue started again (the runtime restarted) counts on from where it was."""
        for consumer in host.consumers:
            key = (host.name, consumer.subscription.name)
            consumer.metrics = self._queues.setdefault(key, QueueMetrics(*key))

    async def refresh(self, wait: float = SCRAPE_WAIT) -> None:
        """Ask the broker and the databases, all at once, for at most ``wait`` seconds."""
        hosts = dict(self.runtime.hosts)
        asked: dict[tuple[str, str], asyncio.Task[Any]] = {}

        def ask(key: tuple[str, str], question: Awaitable[Any]) -> None:
            asked[key] = asyncio.ensure_future(question)

        for name, host in hosts.items():
            ask(("outbox", name), host.relay.waiting())
            for consumer in host.consumers:
                if consumer.queue is not None:
                    ask((name, consumer.subscription.name), consumer.queue.counts())
            if host.transport.connected:  # each service looks at its own dead letters
                namespace = host.namespace
                ask(("dead", name), host.transport.stored_by_subject(
                    namespace.dead_letters_stream, f"{namespace.dead_letters}.{name}.>"))
        if asked:
            _done, late = await asyncio.wait(asked.values(), timeout=wait)
            for task in late:
                task.cancel()
        snapshot = _Snapshot()
        for (first, second), task in asked.items():
            if not task.done() or task.cancelled() or task.exception() is not None:
                continue  # no answer in time: no sample
            if first == "outbox":
                snapshot.outboxes[second] = task.result()
            elif first == "dead":
                snapshot.dead_letters[second] = task.result()
            else:
                snapshot.queues[(first, second)] = task.result()
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        """The numbers of the last refresh, and those read from memory now."""
        return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        hosts = dict(self.runtime.hosts)
        queue_labels = ["service", "queue"]
        waiting = GaugeMetricFamily("pizza_queue_pending_messages", "Messages in a queue "
                                    "not yet delivered to any consumer.", labels=queue_labels)
        in_flight = GaugeMetricFamily("pizza_queue_in_flight_messages", "Messages delivered "
                                      "and not yet acknowledged (JetStream's ack pending).",
                                      labels=queue_labels)
        redelivered = GaugeMetricFamily(
            "pizza_queue_redelivered_messages", "Messages delivered more than once and not "
            "yet settled (JetStream's num_redelivered).", labels=queue_labels)
        for (service, queue), counts in sorted(snap.queues.items()):
            waiting.add_metric([service, queue], counts.waiting)
            in_flight.add_metric([service, queue], counts.in_flight)
            if counts.redelivered is not None:
                redelivered.add_metric([service, queue], counts.redelivered)
        yield from (waiting, in_flight, redelivered)
        yield from self._counted()

        backlog = GaugeMetricFamily("pizza_outbox_backlog_messages", "Outbox rows not yet "
                                    "published to the broker.", labels=["service"])
        oldest = GaugeMetricFamily("pizza_outbox_oldest_age_seconds", "Age of the oldest "
                                   "outbox row not yet published (0 when there is none).",
                                   labels=["service"])
        for service, (count, since) in sorted(snap.outboxes.items()):
            backlog.add_metric([service], count)
            age = 0.0 if since is None else (snap.taken_at - since).total_seconds()
            oldest.add_metric([service], max(0.0, age))
        yield from (backlog, oldest)

        published = CounterMetricFamily("pizza_outbox_published", "Outbox rows the broker "
                                        "acknowledged, since this process started.",
                                        labels=["service"])
        for service, host in sorted(hosts.items()):
            published.add_metric([service], host.relay.stats.published)
        yield published

        stored = GaugeMetricFamily(
            "pizza_dead_letters_messages", "Dead letters stored on the broker, per queue "
            "(queue \"outbox\": rows the broker could never take).", labels=queue_labels)
        for service, by_subject in sorted(snap.dead_letters.items()):
            known = hosts.get(service)
            names = [c.subscription.name for c in known.consumers] if known else []
            namespace = known.namespace if known else self.runtime.namespace
            for queue in sorted([*names, "outbox"]):
                subject = namespace.dead_letter_subject(service, queue)
                stored.add_metric([service, queue], by_subject.get(subject, 0))
        yield stored

        breakers = GaugeMetricFamily(
            "pizza_circuit_breaker_state", "A circuit breaker's state: 1 for the state it is "
            "in, 0 for the others (closed, half-open, open).",
            labels=["service", "breaker", "state"])
        for service, host in sorted(hosts.items()):
            for breaker, read in sorted(host.service.breakers.items()):
                state = read()
                if state is None:  # not in use in this run (e.g. another backend)
                    continue
                for one in BREAKER_STATES:
                    breakers.add_metric([service, breaker, one], 1.0 if one == state else 0.0)
        yield breakers

        lag = GaugeMetricFamily("pizza_event_loop_lag_seconds", "The largest delay of the "
                                "event loop's 0.1 s timer over the last minute: how long "
                                "anything in this process (HTTP, consumers) may have waited.")
        lag.add_metric([], self.runtime.loop_lag.recent_max)
        yield lag

    def _counted(self) -> Iterator[Metric]:
        """What the consumers' hooks counted."""
        labels = ["service", "queue"]
        handled = CounterMetricFamily(
            "pizza_queue_handled", "Messages a queue's handlers handled and committed "
            "(duplicates the inbox dropped are not counted).", labels=labels)
        retried = CounterMetricFamily(
            "pizza_queue_retried", "Messages whose handler failed and that were given back "
            "to the broker for another attempt (each is redelivered after its backoff).",
            labels=labels)
        dead = CounterMetricFamily(
            "pizza_queue_dead_lettered", "Messages a queue gave up on and moved to the dead "
            "letters, by reason.", labels=[*labels, "reason"])
        seconds = HistogramMetricFamily(
            "pizza_handler_duration_seconds", "Time a handler took for one message (its "
            "share of the batch's transaction, commit not included).", labels=labels)
        for (service, queue), counted in sorted(self._queues.items()):
            handled.add_metric([service, queue], counted.handled_count)
            retried.add_metric([service, queue], counted.retried_count)
            for reason, count in sorted(counted.dead_lettered_by.items()):
                dead.add_metric([service, queue, reason], count)
            seconds.add_metric([service, queue], counted.cumulative_buckets(),
                               counted.seconds_sum)
        yield from (handled, retried, dead, seconds)

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Refresh, then the registry in the format ``accept`` asks for (text by default)."""
        from prometheus_client.exposition import choose_encoder

        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
