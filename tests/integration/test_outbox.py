"""The outbox under concurrency, unpublishable rows and long stops (real JetStream).

Each test states a way the outbox used to lose or duplicate messages; each failed on the
relay that deleted "every seq up to the last published", stopped at the first row it could
not publish, and trusted the duplicate window after any stop.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import insert
from test_kernel import Bench, DoThingV1, ThingHappenedV1, bench, eventually

from pizza.eventing import Service, ServiceHost
from pizza.eventing.context import Unpublishable
from pizza.eventing.envelope import Metadata
from pizza.eventing.storage import outbox
from pizza.eventing.transport.base import DEAD_REASON

__all__ = ["bench"]

SUBJECT = ThingHappenedV1.info.subject


async def stored(bench: Bench, stream: str, subject: str) -> list[Any]:
    """Every message a stream holds on ``subject``, read by a throwaway consumer."""
    nc, js = await bench.raw()
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
        total = (info.state.subjects or {}).get(subject, 0)
        if not total:
            return []
        sub = await js.pull_subscribe(subject, stream=stream,
                                      config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        found: list[Any] = []
        while len(found) < total:
            try:
                found.extend(await sub.fetch(min(1000, total - len(found)), timeout=2))
            except nats.errors.TimeoutError:
                break
        return found
    finally:
        await nc.close()


async def count_on_stream(bench: Bench, stream: str, subject: str) -> int:
    nc, js = await bench.raw()
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)
    finally:
        await nc.close()


async def test_many_writers_in_two_processes_lose_nothing(bench: Bench,
                                                          storage: dict[str, Any]) -> None:
    """Two processes of one service on PostgreSQL, 20 writers, 2,000 messages: each is on
    the stream exactly once. Transactions commit out of seq order while a relay publishes,
    which is what made the old relay delete rows it had never sent."""
    if not storage.get("schema"):
        pytest.skip("two processes of one service share a database only on PostgreSQL")
    producer = Service("producer")
    first = await bench.host(producer)
    second = ServiceHost(producer, bench.transport, relay_interval=0.05,
                         database_url=storage["database_url"],
                         schema=f"{storage['schema']}_producer")
    await second.start()
    bench.hosts.append(second)
    writers, each = 20, 100

    async def write(writer: int) -> None:
        host = (first, second)[writer % 2]
        for n in range(each):
            async with host.unit_of_work() as ctx:
                ctx.publish(ThingHappenedV1(number=writer * each + n))
                await asyncio.sleep(random.random() * 0.004)  # commit later than others

    await asyncio.gather(*(write(w) for w in range(writers)))

    async def all_out() -> bool:
        return await count_on_stream(bench, "PIZZA_EVENTS", SUBJECT) >= writers * each

    await eventually(all_out, timeout=60)
    await eventually(lambda: _empty(first), timeout=30)
    messages = await stored(bench, "PIZZA_EVENTS", SUBJECT)
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(ids) == writers * each
    assert len(set(ids)) == writers * each


async def _empty(host: ServiceHost) -> bool:
    return await host.relay.backlog() == 0


async def test_a_row_no_stream_holds_is_moved_aside_and_the_rest_go_on(bench: Bench) -> None:
    """A row whose subject no stream holds (written by an older release, or by hand) is a
    dead letter with its reason; it never blocks the rows behind it."""
    producer = await bench.host(Service("producer"))
    async with producer.db.begin() as conn:
        await conn.execute(insert(outbox), [
            {"message_id": "stray-1", "subject": "not.ours.at.all", "payload": b"{}",
             "traceparent": None, "created_at": datetime.now(UTC)}])
    await publish_numbers(producer, range(10))

    await eventually(lambda: _equals(count_on_stream(bench, "PIZZA_EVENTS", SUBJECT), 10))
    await eventually(lambda: _empty(producer))
    letters = await stored(bench, "PIZZA_DEADLETTERS", "pizza.deadletters.producer.outbox")
    assert len(letters) == 1
    assert letters[0].headers[DEAD_REASON] == "unpublishable"
    assert producer.relay.stats.refused == 1


async def test_unpublishable_messages_fail_the_writer_not_the_relay(bench: Bench) -> None:
    """A command asking for its answer on a subject that is not a reply subject, or a
    message over the size limit, fails where it is written: nothing is committed."""
    producer = await bench.host(Service("producer"))
    with pytest.raises(Unpublishable):
        async with producer.unit_of_work() as ctx:
            ctx.send(DoThingV1(number=1), reply_to=SUBJECT)
    with pytest.raises(Unpublishable):
        async with producer.unit_of_work() as ctx:
            ctx.cause = Metadata(type="DoThing", version=1, source="x",
                                 reply_to="pizza.events.producer.ThingHappened.v1")
            ctx.reply(DoThingV1(number=1))  # type: ignore[arg-type]
    assert await producer.relay.backlog() == 0


async def test_a_relay_back_after_the_duplicate_window_does_not_store_twice(
        bench: Bench) -> None:
    """Rows published just before a crash and found again after longer than the broker's
    duplicate window are looked up on the stream, not stored a second time."""
    nc, js = await bench.raw()
    try:
        config = (await js.stream_info("PIZZA_EVENTS")).config
        config.duplicate_window = 0.5  # the window has long passed, as after a long stop
        await js.update_stream(config)
    finally:
        await nc.close()
    producer = await bench.host(Service("producer"))
    await producer.relay.stop()  # the process "crashed": nothing relays for now
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    rows = [Metadata(type="ThingHappened", version=1, source="producer") for _ in range(3)]
    payloads = {meta.id: f'{{"metadata":{{}},"n":{n}}}'.encode() for n, meta in
                enumerate(rows)}
    # The first two went out before the crash; their rows were never deleted.
    nc, js = await bench.raw()
    try:
        for meta in rows[:2]:
            await js.publish(SUBJECT, payloads[meta.id], headers={"Nats-Msg-Id": meta.id})
    finally:
        await nc.close()
    await asyncio.sleep(1.0)  # past the (shortened) duplicate window
    async with producer.db.begin() as conn:
        await conn.execute(insert(outbox), [
            {"message_id": meta.id, "subject": SUBJECT, "payload": payloads[meta.id],
             "traceparent": None, "created_at": long_ago} for meta in rows])

    producer.relay.start()
    producer.relay.wake()
    await eventually(lambda: _empty(producer))
    ids = [m.headers["Nats-Msg-Id"] for m in await stored(bench, "PIZZA_EVENTS", SUBJECT)]
    assert sorted(ids) == sorted(meta.id for meta in rows)
    assert producer.relay.stats.already_stored == 2


async def publish_numbers(host: ServiceHost, numbers: range) -> None:
    async with host.unit_of_work() as ctx:
        for number in numbers:
            ctx.publish(ThingHappenedV1(number=number))


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected
