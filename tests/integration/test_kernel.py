"""The kernel's promises, against a real embedded JetStream server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import orjson
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

import harness
from pizza.eventing import (
    Backoff,
    Command,
    Context,
    Event,
    Reject,
    Reply,
    Service,
    ServiceHost,
    command,
    event,
    reply,
)
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.storage import outbox
from pizza.eventing.transport.base import Outgoing
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport


@event("ThingHappened", version=1, source="producer")
class ThingHappenedV1(Event):
    number: int


@command("DoThing", version=1, target="worker")
class DoThingV1(Command):
    number: int


@reply("ThingDone", version=1, source="worker")
class ThingDoneV1(Reply):
    doubled: int


def effects_table() -> tuple[MetaData, Table]:
    metadata = MetaData()
    table = Table("effects", metadata, Column("id", Integer, primary_key=True),
                  Column("number", Integer), Column("note", String(50)))
    return metadata, table


# The harness's, with the patience a real broker needs here.
eventually = functools.partial(harness.eventually, timeout=10.0)

class Bench:
    """A producer and a consumer service on one real broker."""

    def __init__(self, server: EmbeddedNats, storage: dict[str, Any]) -> None:
        self.server = server
        self.storage = storage
        self.transport = NatsTransport(server.url)
        self.hosts: list[ServiceHost] = []

    async def host(self, service: Service) -> ServiceHost:
        options = dict(self.storage)
        if options.get("schema"):
            options["schema"] = f"{options['schema']}_{service.name}"
        host = ServiceHost(service, self.transport, relay_interval=0.1, **options)
        await host.start()
        self.hosts.append(host)
        return host

    async def count(self, host: ServiceHost, table: Table) -> int:
        async with host.db.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table)) or 0)

    async def raw(self) -> Any:
        nc = await nats.connect(self.server.url)
        return nc, nc.jetstream()


@pytest.fixture
async def bench(nats_server: EmbeddedNats, storage: dict[str, Any]) -> AsyncIterator[Bench]:
    bench = Bench(nats_server, storage)
    await bench.transport.start()
    yield bench
    for host in reversed(bench.hosts):
        await host.stop()
    await bench.transport.close()


def consumer_service(name: str, table: Table, metadata: MetaData,
                     behaviour: Callable[[ThingHappenedV1], Awaitable[None]] | None = None,
                     **options: Any) -> Service:
    service = Service(name, tables=metadata)

    @service.handles(ThingHappenedV1, **options)
    async def record(event: ThingHappenedV1, ctx: Context) -> None:
        if behaviour is not None:
            await behaviour(event)
        await ctx.db.execute(insert(table).values(number=event.number))

    return service


async def publish_things(host: ServiceHost, numbers: range) -> None:
    async with host.unit_of_work() as ctx:
        for number in numbers:
            ctx.publish(ThingHappenedV1(number=number))


async def test_round_trip_from_outbox_to_handler(bench: Bench) -> None:
    metadata, effects = effects_table()
    producer = await bench.host(Service("producer"))
    consumer = await bench.host(consumer_service("consumer", effects, metadata))
    await publish_things(producer, range(50))

    await eventually(lambda: _equals(bench.count(consumer, effects), 50))
    async with consumer.db.engine.connect() as conn:
        numbers = [row[0] for row in await conn.execute(select(effects.c.number)
                                                        .order_by(effects.c.id))]
    assert numbers == list(range(50)), "one queue is handled in publish order"
    await eventually(lambda: _equals(bench.count(producer, outbox), 0))  # sent rows go


async def test_outbox_keeps_messages_while_broker_is_down(bench: Bench) -> None:
    metadata, effects = effects_table()
    producer = await bench.host(Service("producer"))
    consumer = await bench.host(consumer_service("consumer", effects, metadata))

    await bench.server.stop()
    await eventually(lambda: _true(not bench.transport.connected))
    await publish_things(producer, range(5))  # the business write still commits
    # A relay pass after the commit, with the broker away: nothing goes, nothing is lost.
    assert await producer.relay.drain() == 0
    assert await producer.relay.backlog() == 5

    await bench.server.start()
    await eventually(lambda: _equals(bench.count(consumer, effects), 5), timeout=20)
    assert await producer.relay.backlog() == 0


async def test_a_message_delivered_twice_has_one_effect(bench: Bench) -> None:
    metadata, effects = effects_table()
    consumer = await bench.host(consumer_service("consumer", effects, metadata))
    envelope = Envelope(Metadata(type="ThingHappened", version=1, source="producer"),
                        {"number": 7})
    payload = envelope.encode()
    # Two broker-level messages (different Nats-Msg-Id) carrying the same message id:
    # what a redelivery after a lost ack looks like to the consumer.
    await bench.transport.publish([
        Outgoing("first", ThingHappenedV1.info.subject, payload),
        Outgoing("second", ThingHappenedV1.info.subject, payload),
    ])
    await eventually(lambda: _consumed(consumer, 2))
    assert await bench.count(consumer, effects) == 1
    assert consumer.consumers[0].stats.duplicates == 1


async def test_crash_between_publish_and_removal_gives_no_duplicate(bench: Bench) -> None:
    metadata, effects = effects_table()
    producer_service = Service("producer")
    producer = await bench.host(producer_service)
    consumer = await bench.host(consumer_service("consumer", effects, metadata))

    removal_tried = asyncio.Event()

    async def crash(*_args: Any, **_kwargs: Any) -> None:
        removal_tried.set()
        raise RuntimeError("process died after publishing, before deleting the rows")

    producer.relay._remove = crash  # type: ignore[method-assign]
    await publish_things(producer, range(3))
    await eventually(lambda: _equals(bench.count(consumer, effects), 3))
    await asyncio.wait_for(removal_tried.wait(), 10)  # the relay got as far as the delete
    assert await bench.count(producer, outbox) == 3, "the rows are still there, as after a crash"

    await producer.stop()  # a new process starts on the same database and relays again
    bench.hosts.remove(producer)
    restarted = await bench.host(producer_service)
    await eventually(lambda: _equals(bench.count(restarted, outbox), 0))
    # Removed only once settled: the copies reached the broker, which dropped them.
    nc, js = await bench.raw()
    info = await js.stream_info("PIZZA_EVENTS")
    await nc.close()
    assert info.state.messages == 3, "the broker dropped the re-published copies"
    queue = consumer.consumers[0].queue
    assert queue is not None
    await eventually(lambda: _equals_pair(queue.pending(), (0, 0)))  # all consumed
    assert await bench.count(consumer, effects) == 3


async def test_failing_handler_lands_in_dead_letters_and_consumer_goes_on(
        bench: Bench) -> None:
    metadata, effects = effects_table()
    attempts: list[int] = []

    async def refuse_13(event: ThingHappenedV1) -> None:
        if event.number == 13:
            attempts.append(event.number)
            raise ValueError("unlucky number")

    consumer = await bench.host(consumer_service(
        "consumer", effects, metadata, refuse_13, max_attempts=3,
        backoff=Backoff(initial=0.05, maximum=0.2)))
    producer = await bench.host(Service("producer"))
    await publish_things(producer, range(12, 15))

    await eventually(lambda: _dead_letters_equal(bench, 1))
    dead = await _dead_letters(bench)
    assert dead[0].headers["Pizza-Dead-Reason"] == "handler-failed"
    assert "ValueError: unlucky number" in dead[0].headers["Pizza-Dead-Error"]
    assert dead[0].headers["Pizza-Dead-Attempts"] == "3"
    assert orjson.loads(dead[0].data)["data"] == {"number": 13}
    assert len(attempts) >= 3
    await eventually(lambda: _equals(bench.count(consumer, effects), 2))
    await publish_things(producer, range(20, 21))
    await eventually(lambda: _equals(bench.count(consumer, effects), 3))


async def test_malformed_message_goes_to_dead_letters_at_once(bench: Bench) -> None:
    metadata, effects = effects_table()
    calls: list[int] = []

    async def count_call(event: ThingHappenedV1) -> None:
        calls.append(event.number)

    consumer = await bench.host(consumer_service("consumer", effects, metadata, count_call))
    bad_data = Envelope(Metadata(type="ThingHappened", version=1, source="producer"),
                        {"number": "not a number"}).encode()
    await bench.transport.publish([
        Outgoing("junk", ThingHappenedV1.info.subject, b"{not json"),
        Outgoing("invalid", ThingHappenedV1.info.subject, bad_data),
    ])
    await eventually(lambda: _dead_letters_equal(bench, 2))
    dead = await _dead_letters(bench)
    assert {d.headers["Pizza-Dead-Reason"] for d in dead} == {"malformed"}
    assert {d.headers["Pizza-Dead-Attempts"] for d in dead} == {"1"}
    assert "not JSON" in dead[0].headers["Pizza-Dead-Error"]
    assert calls == []
    assert consumer.consumers[0].stats.dead_lettered == 2


async def test_in_flight_limit_is_respected(bench: Bench) -> None:
    metadata, effects = effects_table()
    holder: dict[str, ServiceHost] = {}
    seen_unacked: list[int] = []

    async def slow(_event: ThingHappenedV1) -> None:
        queue = holder["host"].consumers[0].queue
        assert queue is not None
        seen_unacked.append((await queue.pending())[1])
        await asyncio.sleep(0.01)

    consumer = await bench.host(consumer_service("consumer", effects, metadata, slow,
                                                 max_in_flight=3))
    holder["host"] = consumer
    producer = await bench.host(Service("producer"))
    await publish_things(producer, range(30))
    await eventually(lambda: _equals(bench.count(consumer, effects), 30))
    assert max(seen_unacked) <= 3
    assert consumer.consumers[0].stats.max_in_flight_seen <= 3
    nc, js = await bench.raw()
    info = await js.consumer_info("PIZZA_EVENTS", "consumer-record")
    await nc.close()
    assert info.config.max_ack_pending == 3


async def test_command_is_answered_on_its_reply_to(bench: Bench) -> None:
    worker = Service("worker")
    asker = Service("asker")
    answers: list[tuple[int, Metadata]] = []

    @worker.handles(DoThingV1)
    async def do_thing(cmd: DoThingV1, ctx: Context) -> None:
        ctx.reply(ThingDoneV1(doubled=cmd.number * 2))

    @asker.on_reply(ThingDoneV1)
    async def thing_done(answer: ThingDoneV1, ctx: Context) -> None:
        assert ctx.cause is not None
        answers.append((answer.doubled, ctx.cause))

    await bench.host(worker)
    asking = await bench.host(asker)
    async with asking.unit_of_work() as ctx:
        sent = ctx.send(DoThingV1(number=21))
    assert sent.reply_to == "pizza.replies.asker"

    await eventually(lambda: _true(len(answers) == 1))
    doubled, meta = answers[0]
    assert doubled == 42
    assert meta.causation_id == sent.id
    assert meta.correlation_id == sent.correlation_id
    assert meta.source == "worker"


async def test_stop_finishes_the_message_in_hand(bench: Bench) -> None:
    metadata, effects = effects_table()
    started = asyncio.Event()

    async def slow(_event: ThingHappenedV1) -> None:
        started.set()
        await asyncio.sleep(0.5)

    consumer = await bench.host(consumer_service("consumer", effects, metadata, slow,
                                                 max_in_flight=1))
    producer = await bench.host(Service("producer"))
    await publish_things(producer, range(1))
    await asyncio.wait_for(started.wait(), 10)
    bench.hosts.remove(consumer)
    count_engine = consumer.db  # stop() closes the pool; counting reopens it
    await consumer.stop()
    async with count_engine.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(effects)) == 1
    await count_engine.close()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def _equals_pair(value: Awaitable[tuple[int, int]], expected: tuple[int, int]) -> bool:
    return await value == expected


async def _consumed(host: ServiceHost, count: int) -> bool:
    stats = host.consumers[0].stats
    return stats.handled + stats.duplicates >= count


async def test_a_call_before_the_transaction_holds_no_lock_and_fails_alone(
        bench: Bench) -> None:
    """``handles(before=...)``: a call to someone else runs with no transaction open, its
    answer reaches the handler, a failure retries or dead-letters only its own message,
    and a message handled before does not make the call again."""
    metadata, effects = effects_table()
    service = Service("consumer", tables=metadata)
    holder: dict[str, ServiceHost] = {}
    calls: list[int] = []
    failures = {2: 1}  # number -> how many calls fail before one succeeds

    async def call_out(event: ThingHappenedV1, _meta: Metadata) -> int:
        calls.append(event.number)
        # No transaction of this service is open now: another writer gets in at once
        # (on SQLite, opening one inside it would be refused, or wait for ever).
        async with asyncio.timeout(5), holder["host"].db.begin() as conn:
            await conn.execute(insert(effects).values(number=-event.number, note="outside"))
        if event.number == 3:
            raise Reject("they said no")
        if failures.get(event.number, 0) > 0:
            failures[event.number] -= 1
            raise ConnectionError("they are away")
        return event.number * 10

    @service.handles(ThingHappenedV1, max_attempts=5, before=call_out,
                     backoff=Backoff(initial=0.05, maximum=0.1))
    async def record(event: ThingHappenedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(effects).values(number=ctx.prepared, note="handled"))

    holder["host"] = consumer = await bench.host(service)
    envelopes = [Envelope(Metadata(type="ThingHappened", version=1, source="producer"),
                          {"number": n}) for n in range(1, 5)]
    await bench.transport.publish([Outgoing(env.metadata.id, ThingHappenedV1.info.subject,
                                            env.encode()) for env in envelopes])

    async def handled() -> list[int]:
        async with consumer.db.engine.connect() as conn:
            return sorted((await conn.scalars(
                select(effects.c.number).where(effects.c.note == "handled"))).all())

    await eventually(lambda: _equals_list(handled(), [10, 20, 40]))
    await eventually(lambda: _dead_letters_equal(bench, 1))
    [dead] = await _dead_letters(bench)
    assert dead.headers["Pizza-Dead-Reason"] == "rejected"
    assert orjson.loads(dead.data)["data"] == {"number": 3}
    assert sorted(calls) == [1, 2, 2, 3, 4]  # 2 failed once, then was called again

    # The first message again, as a redelivery: the inbox has it, so no second call.
    await bench.transport.publish([Outgoing("again", ThingHappenedV1.info.subject,
                                            envelopes[0].encode())])
    await eventually(lambda: _true(consumer.consumers[0].stats.duplicates == 1))
    assert sorted(calls) == [1, 2, 2, 3, 4]
    assert await handled() == [10, 20, 40]


async def _equals_list(value: Awaitable[list[int]], expected: list[int]) -> bool:
    return await value == expected


async def _dead_letters(bench: Bench) -> list[Any]:
    nc, js = await bench.raw()
    try:
        sub = await js.pull_subscribe("pizza.deadletters.>", stream="PIZZA_DEADLETTERS")
        try:
            return list(await sub.fetch(100, timeout=0.5))
        except nats.errors.TimeoutError:
            return []
    finally:
        await nc.close()


async def _dead_letters_equal(bench: Bench, count: int) -> bool:
    return len(await _dead_letters(bench)) == count


@event("CounterBumped", version=1, source="producer")
class CounterBumpedV1(Event):
    by: int


async def test_concurrent_read_modify_write_handlers_lose_no_update(
        bench: Bench, storage: dict[str, Any]) -> None:
    """Two hosts of one service (as two processes would) and two queues each, all bumping
    one counter: every bump counts, because each batch is one real transaction."""
    if storage["database_url"] is None:
        pytest.skip("SQLite runs one writer at a time in its one process, so writers "
                    "never overlap there and a lost update could not show")
    metadata = MetaData()
    counters = Table("counters", metadata, Column("name", String(20), primary_key=True),
                     Column("value", Integer))
    inside = {"now": 0, "most": 0}

    async def bump(event: Event, ctx: Context) -> None:
        inside["now"] += 1
        inside["most"] = max(inside["most"], inside["now"])
        try:
            # Read, think, write: the pattern that loses updates without a real transaction.
            current = await ctx.db.scalar(select(counters.c.value)
                                          .where(counters.c.name == "n").with_for_update())
            await asyncio.sleep(0.002)
            await ctx.db.execute(counters.update().where(counters.c.name == "n")
                                 .values(value=(current or 0) + 1))
        finally:
            inside["now"] -= 1

    def counter() -> Service:
        service = Service("counter", tables=metadata)
        # Two queues on different events: their transactions interleave on the same row.
        service.handles(ThingHappenedV1, max_in_flight=4, name="left")(bump)
        service.handles(CounterBumpedV1, max_in_flight=4, name="right")(bump)
        return service

    host = await bench.host(counter())
    await bench.host(counter())  # a second process of the same service, sharing its queues
    async with host.db.begin() as conn:
        await conn.execute(insert(counters).values(name="n", value=0))
    producer = await bench.host(Service("producer"))
    for start in range(0, 80, 8):  # several commits, so the queues fill while they work
        async with producer.unit_of_work() as ctx:
            for number in range(start, start + 4):
                ctx.publish(ThingHappenedV1(number=number))
                ctx.publish(CounterBumpedV1(by=1))

    async def total() -> int:
        async with host.db.read() as conn:
            return int(await conn.scalar(select(counters.c.value)) or 0)

    async def handled() -> int:
        return sum(c.stats.handled for h in bench.hosts if h.name == "counter"
                   for c in h.consumers)

    await eventually(lambda: _equals(handled(), 80), timeout=20)  # every bump committed
    assert inside["most"] >= 2, "the writers never overlapped: this run proved nothing"
    assert await total() == 80, "an update was lost"
