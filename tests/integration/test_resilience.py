"""The subscription runtime through outages: a database away, a lock held by another
program, a queue removed on the server. Real embedded JetStream; SQLite and PostgreSQL
(through a TCP proxy this test cuts, never by stopping the machine's server)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from fastapi import APIRouter
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.engine import make_url

import harness
from harness import app_for
from pizza.app import create_app
from pizza.eventing import Backoff, Context, Event, Service, ServiceHost, event
from pizza.eventing import storage as storage_module
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.host import Runtime
from pizza.eventing.transport.base import Outgoing
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.memory import MemoryTransport
from pizza.eventing.transport.nats import NatsTransport
from pizza.web.identity import LocalIssuer


@event("ResilienceTicked", version=1, source="clock")
class TickedV1(Event):
    number: int


# The harness's, with the patience a real broker needs here.
eventually = functools.partial(harness.eventually, timeout=15.0)

class TcpProxy:
    """127.0.0.1:<port> -> target: cut() drops every connection and refuses new ones,
    as a database server that went away; restore() listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.upstream_ports: set[int] = set()  # the server sees these as client ports

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        self.upstream_ports.add(up_writer.get_extra_info("sockname")[1])

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self.cut()


@dataclass
class Outages:
    """How a test takes a service's database away and gives it back."""

    options: dict[str, Any]
    cut: Callable[[], Awaitable[None]]
    restore: Callable[[], Awaitable[None]]
    proxy: TcpProxy | None = None
    direct_url: str | None = None


class FileLock:
    """Another program holding SQLite's write lock on every database file of a
    PIZZA_HOME (from a thread of its own)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._release = threading.Event()
        self._taken = threading.Event()
        self._thread: threading.Thread | None = None

    def _hold(self) -> None:
        conns = [sqlite3.connect(path, isolation_level=None, timeout=10)
                 for path in sorted(self.home.glob("*.db"))]
        assert conns, f"no database in {self.home}"
        try:
            for conn in conns:
                conn.execute("BEGIN EXCLUSIVE")
            self._taken.set()
            self._release.wait(60)
            for conn in conns:
                conn.execute("COMMIT")
        finally:
            for conn in conns:
                conn.close()

    async def take(self) -> None:
        self._release.clear()
        self._taken.clear()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()
        assert await asyncio.to_thread(self._taken.wait, 10), "could not take the lock"

    async def release(self) -> None:
        self._release.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)


@pytest.fixture
async def outages(storage: dict[str, Any], tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Outages]:
    """SQLite: another program holds the file's lock. PostgreSQL (a schema of the test's
    own, see conftest's ``storage``): the service reaches it through a proxy we cut."""
    if storage["database_url"] is None:
        # Wait less for the lock than the other program holds it: then it is an outage.
        monkeypatch.setattr(storage_module, "SQLITE_LOCK_PATIENCE", 0.3)
        lock = FileLock(tmp_path)
        yield Outages({"database_url": None, "schema": None}, lock.take, lock.release)
        await lock.release()
        return
    url = make_url(storage["database_url"])
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    yield Outages({"database_url": proxied, "schema": storage["schema"]}, proxy.cut,
                  proxy.restore, proxy, storage["database_url"])
    await proxy.stop()


class Heartbeat:
    """A task on the event loop that ticks every 20 ms and keeps the longest gap."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def counter_service() -> tuple[Service, Table]:
    metadata = MetaData()
    effects = Table("effects", metadata, Column("id", Integer, primary_key=True),
                    Column("number", Integer, nullable=False, unique=True))
    service = Service("counter", tables=metadata)

    @service.handles(TickedV1, max_attempts=2, backoff=Backoff(initial=0.2, maximum=0.2))
    async def count(event: TickedV1, ctx: Context) -> None:
        # unique=True: a second effect of one message would fail loudly.
        await ctx.db.execute(insert(effects).values(number=event.number))

    return service, effects


async def numbers(host: ServiceHost, effects: Table) -> list[int]:
    async with host.db.engine.connect() as conn:
        return sorted(row[0] for row in await conn.execute(select(effects.c.number)))


async def publish_ticks(server: EmbeddedNats, numbers: range) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    for number in numbers:
        envelope = Envelope(Metadata(type="ResilienceTicked", version=1, source="clock"),
                            {"number": number})
        await js.publish(TickedV1.info.subject, envelope.encode(),
                         headers={"Nats-Msg-Id": envelope.metadata.id})
    await nc.close()


async def stream_messages(server: EmbeddedNats, stream: str) -> int:
    nc = await nats.connect(server.url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.state.messages
    finally:
        await nc.close()


@pytest.fixture
async def transport(nats_server: EmbeddedNats) -> AsyncIterator[NatsTransport]:
    transport = NatsTransport(nats_server.url)
    await transport.start()
    yield transport
    await transport.close()


async def test_a_database_outage_pauses_the_queue_and_spends_no_attempt(
        nats_server: EmbeddedNats, transport: NatsTransport, outages: Outages,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pizza")
    service, effects = counter_service()
    host = ServiceHost(service, transport, relay_interval=0.1, **outages.options)
    consumer = host.consumers[0]
    # Shorter than the outage: without keeping the batch alive the broker would redeliver.
    consumer.spec = replace(consumer.spec, ack_wait=1.0)
    await host.start()
    caplog.clear()  # what the outage logs, not the start (e.g. the schema's creation)
    try:
        await publish_ticks(nats_server, range(5))
        await eventually(lambda: _equals(numbers(host, effects), list(range(5))))

        with Heartbeat() as heartbeat:
            await outages.cut()
            await publish_ticks(nats_server, range(5, 25))
            await eventually(lambda: host.db.outage.down, what="the outage noticed")
            await asyncio.sleep(3.0)  # past ack_wait and past every attempt's backoff
            await outages.restore()
            await eventually(lambda: _equals(numbers(host, effects), list(range(25))),
                             timeout=30, what="every message handled")
        assert heartbeat.longest < 0.5, f"the event loop froze for {heartbeat.longest:.2f} s"

        assert consumer.stats.dead_lettered == 0
        assert consumer.stats.retried == 0, "an outage spent a message's attempt"
        assert await stream_messages(nats_server, "PIZZA_DEADLETTERS") == 0
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().consumer_info(consumer.spec.stream, consumer.name)
        await nc.close()
        assert info.num_redelivered == 0, "the paused batch was redelivered"

        storage_lines = [r for r in caplog.records if r.name == "pizza.eventing.storage"]
        assert [r.levelno for r in storage_lines] == [logging.WARNING, logging.INFO], \
            [r.getMessage() for r in storage_lines]
        assert not [r for r in caplog.records
                    if r.name == "pizza.eventing.consumer" and r.levelno >= logging.WARNING]
    finally:
        await host.stop()


async def test_a_broker_outage_is_one_warning_and_the_queue_resumes(
        nats_server: EmbeddedNats, transport: NatsTransport, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    caplog.set_level(logging.INFO, logger="pizza")
    service, effects = counter_service()
    host = ServiceHost(service, transport, relay_interval=0.1)
    await host.start()
    try:
        await publish_ticks(nats_server, range(3))
        await eventually(lambda: _equals(numbers(host, effects), [0, 1, 2]))
        await nats_server.stop()
        await asyncio.sleep(3.0)  # six fetch timeouts' worth of broker absence
        await nats_server.start()
        await publish_ticks(nats_server, range(3, 6))
        await eventually(lambda: _equals(numbers(host, effects), list(range(6))),
                         timeout=30, what="messages after the broker came back")
        kernel_lines = [r for r in caplog.records if r.name.startswith("pizza.eventing")]
        assert len([r for r in kernel_lines if r.levelno >= logging.WARNING]) == 1, \
            [r.getMessage() for r in kernel_lines]
    finally:
        await host.stop()


async def test_a_handler_bug_is_still_retried_and_dead_lettered(
        nats_server: EmbeddedNats, transport: NatsTransport, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The outage path must not swallow real failures: a KeyError spends attempts."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    service = Service("buggy")

    @service.handles(TickedV1, max_attempts=2, backoff=Backoff(initial=0.1, maximum=0.1))
    async def count(event: TickedV1, ctx: Context) -> None:
        raise KeyError(event.number)

    host = ServiceHost(service, transport, relay_interval=0.1)
    await host.start()
    try:
        await publish_ticks(nats_server, range(1))
        await eventually(lambda: host.consumers[0].stats.dead_lettered == 1)
        assert host.consumers[0].stats.retried == 1
        assert not host.db.outage.down
    finally:
        await host.stop()


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


def ticks_api() -> Service:
    metadata = MetaData()
    ticks = Table("ticks", metadata, Column("number", Integer, primary_key=True))
    service = Service("ticker", tables=metadata)
    service.router = APIRouter()

    @service.handles(TickedV1)
    async def count(event: TickedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(ticks).values(number=event.number))

    @service.router.post("/api/ticks/{number}", status_code=201)
    async def tick(number: int) -> dict[str, int]:
        async with service.unit_of_work() as ctx:
            await ctx.db.execute(insert(ticks).values(number=number))
        return {"number": number}

    return service


async def test_while_the_database_is_away_the_api_answers_503(outages: Outages,
                                                              tmp_path: Path) -> None:
    service = ticks_api()
    runtime = Runtime([service], transport=MemoryTransport(), relay_interval=0.05,
                      **outages.options)
    await runtime.start()
    issuer = LocalIssuer(tmp_path / "identity")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for([service], issuer)),
                               base_url="http://test",
                               headers={"Authorization": f"Bearer {issuer.issue('operator')}"})
    try:
        assert (await client.post("/api/ticks/1")).status_code == 201
        await outages.cut()
        answer = await client.post("/api/ticks/2")
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["Retry-After"]) > 0
        body = answer.json()
        assert body["error"]["code"] == "unavailable"
        assert body["error"]["message"]
        assert body["error"]["details"] is None
        await outages.restore()

        async def accepted() -> bool:
            return (await client.post("/api/ticks/3")).status_code == 201

        await eventually(accepted, what="the API answering again")
    finally:
        await client.aclose()
        await runtime.stop()


async def test_health_answers_through_an_outage_and_reports_the_loop_lag(
        outages: Outages) -> None:
    transport = MemoryTransport()
    app = create_app([ticks_api()], runtime_options={"transport": transport,
                                                     "relay_interval": 0.05,
                                                     **outages.options})
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://test")
        time.sleep(0.3)  # noqa: ASYNC251 (blocks the loop, as a heavy inline statement)
        await asyncio.sleep(0.25)  # the monitor's next tick measures it
        health = (await client.get("/api/health")).json()
        assert health["loopLagMs"] >= 150, health  # 0.3 s less the timer's 0.1 s
        assert health["services"]["ticker"]["database"] == "ok"

        await outages.cut()
        envelope = Envelope(Metadata(type="ResilienceTicked", version=1, source="clock"),
                            {"number": 9})
        await transport.publish([Outgoing(envelope.metadata.id, TickedV1.info.subject,
                                          envelope.encode())])
        host = app.state.runtime.hosts["ticker"]
        await eventually(lambda: host.db.outage.down, what="the consumer pausing")
        started = time.monotonic()
        answer = await client.get("/api/health")
        assert time.monotonic() - started < 1.0
        assert answer.status_code == 200
        assert answer.json()["status"] == "degraded"
        assert answer.json()["services"]["ticker"]["database"] == "unavailable"
        await outages.restore()
        await eventually(lambda: not host.db.outage.down, what="the consumer resuming")
        await client.aclose()


async def test_a_service_starts_once_another_program_lets_go_of_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    first = storage_module.Database("late")
    await first.create()
    await first.close()
    lock = FileLock(tmp_path)
    await lock.take()
    db = storage_module.Database("late")
    try:
        with Heartbeat() as heartbeat:
            creating = asyncio.create_task(db.create())
            await asyncio.sleep(1.0)
            assert not creating.done(), "it neither failed nor got past the lock"
            await lock.release()
            await asyncio.wait_for(creating, 10)
        assert heartbeat.longest < 0.5, f"the event loop froze for {heartbeat.longest:.2f} s"
    finally:
        await lock.release()
        await db.close()


async def test_connections_killed_on_the_server_cost_no_attempt(
        nats_server: EmbeddedNats, transport: NatsTransport, outages: Outages) -> None:
    """pg_terminate_backend of the service's own connections (found by the proxy's ports)
    mid-transaction: the database answers the probe at once, and the batch is handled
    again without spending an attempt."""
    if outages.proxy is None:
        pytest.skip("PostgreSQL only")
    import asyncpg

    metadata = MetaData()
    effects = Table("effects", metadata, Column("number", Integer, primary_key=True))
    service = Service("slowpoke", tables=metadata)
    entered = asyncio.Event()

    @service.handles(TickedV1, max_attempts=1)
    async def count(event: TickedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(effects).values(number=event.number))
        entered.set()
        await asyncio.sleep(0.5)  # the transaction is open: the kill lands in it

    host = ServiceHost(service, transport, relay_interval=0.1, **outages.options)
    await host.start()
    try:
        await publish_ticks(nats_server, range(1))
        await asyncio.wait_for(entered.wait(), 10)
        killer = await asyncpg.connect(outages.direct_url)
        try:
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE client_port = ANY($1::int[])", list(outages.proxy.upstream_ports))
        finally:
            await killer.close()
        assert killed >= 1
        await eventually(lambda: _equals(numbers(host, effects), [0]), what="handled")
        consumer = host.consumers[0]
        assert consumer.stats.dead_lettered == 0 and consumer.stats.retried == 0
    finally:
        await host.stop()


async def test_a_service_stops_promptly_during_an_outage(
        nats_server: EmbeddedNats, transport: NatsTransport, outages: Outages) -> None:
    service, _effects = counter_service()
    host = ServiceHost(service, transport, relay_interval=0.1, **outages.options)
    await host.start()
    stopped = False
    try:
        await outages.cut()
        await publish_ticks(nats_server, range(1))
        await eventually(lambda: host.db.outage.down, what="the outage noticed")
        started = time.monotonic()
        await host.stop()
        stopped = True
        assert time.monotonic() - started < 8.0
        assert host.consumers[0].stats.retried == 0
    finally:
        await outages.restore()
        if not stopped:
            await host.stop()


async def test_a_service_waits_at_start_for_a_database_that_is_away(
        outages: Outages, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL away (or out of connections) when a process starts: it waits, saying so
    once, and starts when the database answers, instead of exiting (a process restarted
    by its supervisor during an outage would otherwise die again and again)."""
    if outages.proxy is None:
        pytest.skip("PostgreSQL only: a SQLite file that another program locks is above")
    await outages.cut()
    db = storage_module.Database("waiting", outages.options["database_url"],
                                 schema=f"{outages.options['schema']}_waiting")
    try:
        with caplog.at_level(logging.INFO, logger="pizza.eventing.storage"):
            creating = asyncio.create_task(db.create())
            await eventually(lambda: any("unavailable at start" in r.getMessage()
                                         for r in caplog.records))
            assert not creating.done(), "it gave up while the database was away"
            await outages.restore()
            await asyncio.wait_for(creating, 15)
        waits = [r for r in caplog.records if "unavailable at start" in r.getMessage()]
        assert len(waits) == 1, "one line per outage, not one per try"
        assert any("answers after" in r.getMessage() for r in caplog.records)
    finally:
        await db.close()
