"""Queues heal and follow the code: a consumer or stream removed on the server is made
again, declared settings are applied to an existing consumer, and a dead letter's retry
reaches only the consumer that failed. Each test runs its own embedded nats-server."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

import harness
from pizza.eventing import Context, Event, Service, ServiceHost, event
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport import nats as nats_transport
from pizza.eventing.transport.base import retry_subject
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.memory import MemoryTransport
from pizza.eventing.transport.nats import NatsTransport


@event("HealingNoted", version=1, source="healer")
class NotedV1(Event):
    number: int


# The harness's, with the patience a real broker needs here.
eventually = functools.partial(harness.eventually, timeout=15.0)

def noting_service(name: str) -> tuple[Service, Table]:
    metadata = MetaData()
    notes = Table("notes", metadata, Column("id", Integer, primary_key=True),
                  Column("number", Integer, nullable=False),
                  Column("subject", String(200)))
    service = Service(name, tables=metadata)

    @service.handles(NotedV1)
    async def note(event: NotedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(notes).values(number=event.number))

    return service, notes


async def noted(host: ServiceHost, notes: Table) -> list[int]:
    async with host.db.engine.connect() as conn:
        return sorted(row[0] for row in await conn.execute(select(notes.c.number)))


def envelope(number: int) -> Envelope:
    return Envelope(Metadata(type="HealingNoted", version=1, source="healer"),
                    {"number": number})


class Broker:
    """A raw client of the test's own server, for what an operator would do."""

    def __init__(self, server: EmbeddedNats) -> None:
        self.server = server

    async def __aenter__(self) -> Any:
        self.nc = await nats.connect(self.server.url)
        return self.nc.jetstream()

    async def __aexit__(self, *_exc: object) -> None:
        await self.nc.close()


async def publish(server: EmbeddedNats, env: Envelope, subject: str | None = None,
                  msg_id: str | None = None) -> None:
    async with Broker(server) as js:
        await js.publish(subject or NotedV1.info.subject, env.encode(),
                         headers={"Nats-Msg-Id": msg_id or env.metadata.id})


@pytest.fixture
async def running(tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[ServiceHost]]:
    """The hosts a test starts (each on a connection of its own), stopped at the end."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    hosts: list[ServiceHost] = []
    yield hosts
    for host in hosts:
        await host.stop()
        await host.transport.close()


async def start(hosts: list[ServiceHost], server: EmbeddedNats, service: Service) -> ServiceHost:
    transport = NatsTransport(server.url)
    await transport.start()
    host = ServiceHost(service, transport, relay_interval=0.1)
    await host.start()
    hosts.append(host)
    return host


@pytest.mark.parametrize("removed", ["consumer", "stream"])
async def test_a_queue_removed_on_the_server_is_recreated_and_goes_on(
        nats_server: EmbeddedNats, running: list[ServiceHost], removed: str,
        caplog: pytest.LogCaptureFixture) -> None:
    service, notes = noting_service("healer")
    host = await start(running, nats_server, service)
    consumer = host.consumers[0]
    await publish(nats_server, envelope(1))
    await eventually(lambda: _is(noted(host, notes), [1]))

    async with Broker(nats_server) as js:  # an operator's mistake, a stream restore
        if removed == "consumer":
            await js.delete_consumer(consumer.spec.stream, consumer.name)
        else:
            await js.delete_stream(consumer.spec.stream)

    async def stream_back() -> bool:
        async with Broker(nats_server) as js:
            try:
                await js.stream_info(consumer.spec.stream)
            except NotFoundError:
                return False
            return True

    await eventually(stream_back, what="the stream recreated")
    await publish(nats_server, envelope(2))
    await eventually(lambda: _is(noted(host, notes), [1, 2]), what="a message after healing")
    async with Broker(nats_server) as js:
        info = await js.consumer_info(consumer.spec.stream, consumer.name)
    assert sorted(info.config.filter_subjects or []) == sorted(consumer.spec.subjects)
    assert info.config.max_ack_pending == consumer.spec.max_in_flight
    healed = [r for r in caplog.records if "recreated" in r.getMessage()]
    assert len(healed) == 1, [r.getMessage() for r in caplog.records]
    fetch_warnings = [r for r in caplog.records if r.name == "pizza.eventing.consumer"
                      and r.levelno >= logging.WARNING]
    assert len(fetch_warnings) <= 2, "one line when it broke, one when it came back"


async def test_declared_settings_are_applied_to_an_existing_consumer(
        nats_server: EmbeddedNats, running: list[ServiceHost]) -> None:
    service, notes = noting_service("settled")
    subscription = next(iter(service.subscriptions.values()))
    name = f"settled-{subscription.name}"
    streams = NatsTransport(nats_server.url)
    await streams.start()  # makes the streams
    await streams.close()
    async with Broker(nats_server) as js:
        # An older version of the code made it: one subject, other limits.
        await js.add_consumer("PIZZA_EVENTS", ConsumerConfig(
            durable_name=name, filter_subject=NotedV1.info.subject,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=5.0, max_ack_pending=3, max_deliver=4,
            deliver_policy=DeliverPolicy.ALL))

    host = await start(running, nats_server, service)
    spec = host.consumers[0].spec
    async with Broker(nats_server) as js:
        info = await js.consumer_info("PIZZA_EVENTS", name)
    assert sorted(info.config.filter_subjects or [info.config.filter_subject]) == sorted(
        [NotedV1.info.subject, retry_subject(NotedV1.info.subject, name)])
    assert info.config.ack_wait == spec.ack_wait
    assert info.config.max_ack_pending == spec.max_in_flight
    assert info.config.max_deliver == -1
    assert info.config.deliver_policy == DeliverPolicy.ALL, "where it reads from stays"
    await publish(nats_server, envelope(5))
    await eventually(lambda: _is(noted(host, notes), [5]))


async def test_a_consumer_changed_on_the_server_while_running_is_set_back(
        nats_server: EmbeddedNats, running: list[ServiceHost],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_transport, "RECONCILE_EVERY", 0.3)
    service, notes = noting_service("drifting")
    host = await start(running, nats_server, service)
    spec = host.consumers[0].spec
    async with Broker(nats_server) as js:
        info = await js.consumer_info(spec.stream, spec.name)
        changed = info.config
        changed.max_ack_pending = 1
        changed.filter_subjects = [NotedV1.info.subject]
        await js.add_consumer(spec.stream, changed)

    async def as_declared() -> bool:
        async with Broker(nats_server) as js:
            info = await js.consumer_info(spec.stream, spec.name)
        return (info.config.max_ack_pending == spec.max_in_flight
                and sorted(info.config.filter_subjects or []) == sorted(spec.subjects))

    await eventually(as_declared, what="the declared settings back")
    await publish(nats_server, envelope(3))
    await eventually(lambda: _is(noted(host, notes), [3]))


async def test_a_dead_letters_retry_reaches_only_the_consumer_that_failed(
        nats_server: EmbeddedNats, running: list[ServiceHost]) -> None:
    failing, failing_notes = noting_service("failing")
    other, other_notes = noting_service("other")
    failed = await start(running, nats_server, failing)
    bystander = await start(running, nats_server, other)
    first, second = envelope(7), envelope(8)
    await publish(nats_server, first)
    await eventually(lambda: _is(noted(bystander, other_notes), [7]))
    await eventually(lambda: _is(noted(failed, failing_notes), [7]))

    # What `pizza deadletters retry` publishes for a dead letter of `failing` (here one
    # that was never handled, and one that was: its copy must have no second effect).
    name = failed.consumers[0].name
    for env, seq in ((second, 1), (first, 2)):
        await publish(nats_server, env, retry_subject(NotedV1.info.subject, name),
                      f"{env.metadata.id}.retry.{name}.{seq}")
    await eventually(lambda: _is(noted(failed, failing_notes), [7, 8]))
    await eventually(lambda: _consumed(failed, 3), what="the duplicate retry seen")
    assert await noted(failed, failing_notes) == [7, 8]
    assert failed.consumers[0].stats.duplicates == 1
    async with Broker(nats_server) as js:
        info = await js.consumer_info("PIZZA_EVENTS", bystander.consumers[0].name)
    assert info.delivered.stream_seq == 1 and info.num_pending == 0, \
        "the other consumer never saw the retries"
    assert await noted(bystander, other_notes) == [7]


async def test_the_memory_transport_routes_retries_the_same_way() -> None:
    from pizza.eventing.transport.base import Outgoing, QueueSpec

    transport = MemoryTransport()
    mine = await transport.queue(QueueSpec("mine", NotedV1.info.subject))
    theirs = await transport.queue(QueueSpec("theirs", NotedV1.info.subject))
    await transport.publish([Outgoing("a", retry_subject(NotedV1.info.subject, "mine"),
                                      b"{}")])
    got = await mine.fetch(10, timeout=0.1)
    assert [d.subject for d in got] == [retry_subject(NotedV1.info.subject, "mine")]
    assert await theirs.fetch(10, timeout=0.1) == []
    assert await theirs.pending() == (0, 0)


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _consumed(host: ServiceHost, count: int) -> bool:
    stats = host.consumers[0].stats
    return stats.handled + stats.duplicates >= count
