"""Running services: a ServiceHost runs one; a Runtime runs several on one bus.

A ServiceHost gives a declared Service its database (tables created at start), its outbox
relay, and one Consumer task per subscription. ``stop()`` stops fetching, lets each
consumer finish the batch in hand, drains the outbox once more, and closes.

A Runtime owns the bus: it connects to ``PIZZA_NATS_URL`` or starts an embedded
nats-server under ``$PIZZA_HOME/nats`` (with a user per service), and stops what it
started. Its ``namespace`` (``namespace.py``; ``pizza`` by default) names everything it
uses on the broker, so systems of different namespaces share a server without meeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pizza.eventing import inbox, outbox, settings, topology, tracing, usage
from pizza.eventing.catalog import Registry, registry
from pizza.eventing.consumer import Consumer, ConsumerStats
from pizza.eventing.context import Context, Transaction, run_commit_callbacks
from pizza.eventing.envelope import Metadata
from pizza.eventing.loop_lag import LoopLag
from pizza.eventing.metrics import RuntimeMetrics
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.service import Background, Service
from pizza.eventing.storage import Database
from pizza.eventing.transport.base import Transport

log = logging.getLogger("pizza.eventing.host")


class ServiceHost:
    """``namespace``: the system the service belongs to on the bus; the transport's
    (``pizza`` unless it was given another), which it must be."""

    def __init__(self, service: Service, transport: Transport, *,
                 database_url: str | None = None, schema: str | None = None,
                 registry: Registry = registry, relay_interval: float = 1.0,
                 namespace: Namespace | None = None) -> None:
        self.service = service
        self.transport = transport
        self.namespace = namespace = _same(namespace, transport)
        self.db = Database(service.name, database_url, schema=schema, tables=service.tables)
        self.relay = outbox.Relay(self.db, transport, interval=relay_interval,
                                  namespace=namespace)
        self.consumers = [
            Consumer(service.name, sub, self.db, transport, registry, self.relay,
                     namespace=namespace)
            for sub in service.subscriptions.values()
        ]
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._usage: usage.UsageView | None = None
        self._background: list[asyncio.Task[None]] = []
        self._wakeups: dict[str, asyncio.Event] = {}  # by background job

    @property
    def name(self) -> str:
        return self.service.name

    async def start(self) -> None:
        await self.db.create()
        self.service.host = self
        self.relay.start()
        await self._start_consumers()
        await usage.announce(self.transport, self.service)
        for hook in self.service.on_start:
            await hook(self)
        self._wakeups = {job.name: asyncio.Event() for job in self.service.background}
        self._background = [
            asyncio.create_task(_keep_doing(job, self._wakeups[job.name]),
                                name=f"{self.name}-{job.name}")
            for job in self.service.background if job.when()]
        self.relay.wake()  # anything left from a previous run goes out now

    async def _start_consumers(self) -> None:
        self._stopping.clear()
        # Queues exist before start() returns, so no message published after it is missed.
        await asyncio.gather(*(consumer.open() for consumer in self.consumers))
        for consumer in self.consumers:
            self._tasks.append(asyncio.create_task(self._consume(consumer),
                                                   name=consumer.name))

    async def _stop_consumers(self, timeout: float) -> None:
        self._stopping.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    def wake(self, job: str) -> None:
        """End the rest of the background ``job`` (Service.wake)."""
        wakeup = self._wakeups.get(job)
        if wakeup is not None:
            wakeup.set()

    def usage_view(self) -> usage.UsageView:
        """Who consumes what, cached and refreshed in the background (started on first use)."""
        if self._usage is None:
            self._usage = usage.UsageView(self.transport)
            self._usage.start()
        return self._usage

    async def replay(self) -> None:
        """Rebuild this service's state from the start of its streams.

        Its queues are deleted and made again reading from the first message, its inbox
        rows are forgotten (or the history would be taken for duplicates), and its
        ``on_replay`` hooks clear the state that history rebuilds.
        """
        await self._stop_consumers(timeout=10.0)
        names = [consumer.name for consumer in self.consumers]
        for consumer in self.consumers:
            await self.transport.delete_queue(consumer.spec)
            consumer.spec = replace(consumer.spec, start="all")
            consumer.stats = ConsumerStats()
        await inbox.forget(self.db, names)
        for hook in self.service.on_replay:
            await hook(self)
        await self._start_consumers()

    async def _consume(self, consumer: Consumer) -> None:
        while not self._stopping.is_set():
            try:
                await consumer.run(self._stopping)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the broker was away when the queue was created
                log.exception("consumer %s stopped; restarting", consumer.name)
                await asyncio.sleep(1.0)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop fetching and finish what is in flight, then the service's own hooks (its
        stores), then one last relay of the outbox."""
        await _cancel(self._background, timeout)
        self._background = []
        await self._stop_consumers(timeout)
        for hook in self.service.on_stop:
            try:
                await asyncio.wait_for(hook(self), timeout)
            except Exception:
                log.exception("stopping %s: an on_stop hook failed", self.name)
        if self._usage is not None:
            await self._usage.stop()
            self._usage = None
        await self.relay.stop()
        if self.service.host is self:
            self.service.host = None
        await self.db.close()

    @contextlib.asynccontextmanager
    async def unit_of_work(self, correlation_id: str | None = None, *,
                           cause: Metadata | None = None) -> AsyncIterator[Context]:
        """One transaction whose messages go through the outbox. ``cause``: the message
        this work answers, handled earlier (e.g. a command whose effect ran outside any
        transaction): replies go to its replyTo, caused by it, in its story."""
        async with self.unit_of_work_for([cause], correlation_id) as (ctx,):
            yield ctx

    @contextlib.asynccontextmanager
    async def unit_of_work_for(self, causes: Sequence[Metadata | None],
                               correlation_id: str | None = None
                               ) -> AsyncIterator[list[Context]]:
        """One transaction, with a Context for each of ``causes``: the work on several
        messages handled earlier, answered together (the email sender's batch) with one
        commit instead of one each. Their messages go through the outbox."""
        shared = Transaction()
        async with self.db.begin() as conn:
            contexts = [Context(self.service.name, conn, cause=cause,
                                correlation_id=correlation_id, namespace=self.namespace,
                                transaction=shared) for cause in causes]
            if correlation_id is not None:  # later work on a new story continues this span
                tracing.begin_story(self.service.name, correlation_id)
            yield contexts
            await shared.flush()
            await outbox.write(conn, [m for ctx in contexts for m in ctx.outgoing])
        if any(ctx.outgoing for ctx in contexts):
            self.relay.wake()
        run_commit_callbacks(contexts)


def _same(namespace: Namespace | None, transport: Transport | None) -> Namespace:
    """The namespace asked for, which a transport given must already use; else the
    transport's, else the default."""
    if namespace is None:
        return transport.namespace if transport is not None else DEFAULT
    if transport is not None and transport.namespace != namespace:
        raise ValueError(f"namespace {namespace} was asked for, but the transport given "
                         f"uses {transport.namespace}")
    return namespace


async def _cancel(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again every half second: a
    library that swallows a cancellation (Python 3.11's ``wait_for`` can, when its inner
    call ends at the same moment) would otherwise leave a job running and a clean stop
    waiting for ever. One still running after ``timeout`` is left behind, said once."""
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.warning("stopping: %s did not end within %.0f s; left behind",
                    ", ".join(sorted(task.get_name() for task in pending)), timeout)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with %r", task.get_name(), task.exception())


async def _keep_doing(job: Background, woken: asyncio.Event | None = None) -> None:
    """Do the job again and again; rest only when there was nothing to do, and only
    until ``woken`` is set (a wake-up that comes during the work ends the next rest)."""
    woken = woken or asyncio.Event()
    while True:
        woken.clear()
        try:
            busy = await job.work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s tripped; carrying on", job.name)
            await asyncio.sleep(job.error_pause)
            continue
        if busy is True:
            continue
        rest = job.idle_seconds if busy is False else busy
        if rest <= 0:
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(rest):
                await woken.wait()


class Runtime:
    """Services on one bus: the embedded broker (or PIZZA_NATS_URL) and a host each.

    The embedded broker admits only its users (``transport/permissions.py``), so each
    service gets a connection of its own, with its own credentials: seven services in
    one process are seven connections, each refused by the broker what its service may
    not do. On PIZZA_NATS_URL the services share one connection, with PIZZA_NATS_CREDS
    if set; a transport passed in (tests) is shared as it is.

    ``namespace``: the system's names on the bus (streams, subjects, buckets, the
    broker's users); the default is CONTRACT.md's ``pizza``. A transport passed in must
    use the same one (or gives it, when no namespace is named).
    """

    def __init__(self, services: Sequence[Service], *, nats_url: str | None = None,
                 database_url: str | None = None, transport: Transport | None = None,
                 namespace: Namespace | None = None, **host_options: Any) -> None:
        self.namespace = _same(namespace, transport)
        self.services = list(services)
        self.nats_url = nats_url or settings.nats_url()
        self.database_url = database_url
        self.transport = transport  # the one shared by every service, if shared
        self.transports: dict[str, Transport] = {}  # by service
        self.host_options = host_options
        self.embedded: Any = None
        self.hosts: dict[str, ServiceHost] = {}
        self.loop_lag = LoopLag()
        self.metrics = RuntimeMetrics(self)  # GET /metrics; a registry of its own

    @property
    def connected(self) -> bool:
        """Every connection to the bus is up."""
        return bool(self.transports) and all(t.connected for t in self.transports.values())

    async def start(self) -> None:
        self.loop_lag.start()
        if self.transport is None:
            await self._connect()
        else:
            self.transports = {service.name: self.transport for service in self.services}
        for transport in {id(t): t for t in self.transports.values()}.values():
            await transport.start()
        # Every service says what it reads, and has its queues, before any starts
        # producing: no consumer misses a producer's first messages (eventing/topology.py).
        await topology.provision(self.services, lambda service: self.transports[service.name])
        for service in self.services:
            host = ServiceHost(service, self.transports[service.name],
                               database_url=self.database_url, namespace=self.namespace,
                               **self.host_options)
            self.metrics.watch(host)
            await host.start()
            self.hosts[service.name] = host

    async def _connect(self) -> None:
        from pizza.eventing.transport import credentials
        from pizza.eventing.transport.nats import NatsTransport

        namespace = self.namespace
        alone = self.services[0].name if len(self.services) == 1 else None
        if self.nats_url is not None:
            given = settings.nats_creds()
            if given is not None and given.is_dir():  # a seed per service: each its own
                seeds = given
                self._own_connections(lambda name: credentials.seed_path(seeds, name))
                return
            self.transport = NatsTransport(
                self.nats_url, name=namespace.connection_name(alone),
                credentials=credentials.load(given) if given else None, identity=alone,
                namespace=namespace)
            self.transports = {service.name: self.transport for service in self.services}
            return
        from pizza.eventing.transport.embedded import EmbeddedNats
        from pizza.eventing.transport.permissions import broker_users

        users = broker_users(self.services, settings.credentials_dir(), namespace)
        self.embedded = EmbeddedNats(
            settings.home() / "nats", authorization=users.config,
            credentials=credentials.load(users.seeds[credentials.OPERATOR]),
            sync=settings.nats_sync())
        await self.embedded.start()
        self.nats_url = self.embedded.url
        settings.broker_file().write_text(self.nats_url)
        self._own_connections(users.seeds.__getitem__, replicas=1)  # one server: one copy

    def _own_connections(self, seed_of: Callable[[str], Path],
                         replicas: int | None = None) -> None:
        """A connection per service, each on its own user's seed (``seed_of(name)``)."""
        from pizza.eventing.transport import credentials
        from pizza.eventing.transport.nats import NatsTransport

        assert self.nats_url is not None
        self.transports = {
            service.name: NatsTransport(
                self.nats_url, name=self.namespace.connection_name(service.name),
                credentials=credentials.load(seed_of(service.name)),
                identity=service.name, replicas=replicas, namespace=self.namespace)
            for service in self.services}

    async def stop(self) -> None:
        await asyncio.gather(*(host.stop() for host in self.hosts.values()))
        self.hosts.clear()
        await self.loop_lag.stop()
        for transport in {id(t): t for t in self.transports.values()}.values():
            await transport.close()
        if self.embedded is not None:
            settings.broker_file().unlink(missing_ok=True)
            await self.embedded.stop()
            self.embedded = None

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
