"""One contract, two brokers: what the kernel relies on from a transport, run against the
in-memory stand-in and against a real JetStream server this test starts itself.

If the two ever disagree, the unit tests that run on memory prove nothing about
production: this suite is what keeps the stand-in honest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pizza.eventing.transport.base import (
    MAX_MESSAGE_BYTES,
    Delivery,
    Outgoing,
    Queue,
    QueueSpec,
    Transport,
    retry_subject,
)
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.memory import MemoryTransport
from pizza.eventing.transport.nats import NatsTransport

SUBJECT = "pizza.events.kitchen.OrderPrepared.v1"
OTHER = "pizza.events.kitchen.OrderCancelled.v1"
DEAD = "pizza.deadletters.kitchen.open-ticket"


class Outage:
    """Takes the broker away and brings it back: the switch of the memory stand-in, or
    our own nats-server stopped and started again on its port and store."""

    def __init__(self, transport: Transport, server: EmbeddedNats | None) -> None:
        self.transport, self.server = transport, server

    async def begin(self) -> None:
        if isinstance(self.transport, MemoryTransport):
            self.transport.go_down()
        else:
            assert self.server is not None
            await self.server.stop()
        await wait_for(lambda: not self.transport.connected)

    async def end(self) -> None:
        if isinstance(self.transport, MemoryTransport):
            self.transport.come_back()
        else:
            assert self.server is not None
            await self.server.start()
        await wait_for(lambda: self.transport.connected)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def outage(transport: Transport, request: pytest.FixtureRequest) -> Outage:
    return Outage(transport, getattr(request.node, "nats_server", None))


@pytest.fixture(params=["memory", "nats"])
async def transport(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Transport]:
    """The in-memory transport, or NatsTransport on an embedded nats-server of our own."""
    if request.param == "memory":
        yield MemoryTransport()
        return
    async with EmbeddedNats(tmp_path / "nats") as server:
        request.node.nats_server = server
        real = NatsTransport(server.url)
        await real.start()
        opened: list[Queue] = []
        join = real.queue

        async def queue(spec: QueueSpec) -> Queue:
            opened.append(await join(spec))
            return opened[-1]

        real.queue = queue  # type: ignore[method-assign]
        try:
            yield real
        finally:
            for handle in opened:  # an open pull subscription makes close() wait 5 s
                await handle.close()
            await real.close()


def out(n: int, subject: str = SUBJECT, **options: Any) -> Outgoing:
    return Outgoing(message_id=f"m{n}-{uuid.uuid4().hex[:6]}", subject=subject,
                    payload=f"{n}".encode(), **options)


def spec(name: str = "kitchen-q", subject: str = SUBJECT, **options: Any) -> QueueSpec:
    return QueueSpec(name=name, subject=subject, **options)


async def take(queue: Queue, count: int, timeout: float = 5.0) -> list[Delivery]:
    """Fetch until ``count`` deliveries came (or the time is up): brokers may split."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: list[Delivery] = []
    while len(got) < count and loop.time() < deadline:
        got += await queue.fetch(count - len(got), timeout=min(1.0, deadline - loop.time()))
    return got


async def pending_becomes(queue: Queue, expected: tuple[int, int]) -> None:
    """An ack is one-way on JetStream: the consumer's counts follow a moment later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while (now := await queue.pending()) != expected:
        assert loop.time() < deadline, f"pending stayed {now}, expected {expected}"
        await asyncio.sleep(0.02)


async def everything(transport: Transport, subject: str = SUBJECT) -> list[bytes]:
    """What the broker stores on a subject, read by a fresh queue from the start."""
    queue = await transport.queue(spec(f"reader-{uuid.uuid4().hex[:8]}", subject, start="all"))
    try:
        got = await queue.fetch(100, timeout=0.5)
        for delivery in got:
            await delivery.ack()
        return [d.data for d in got]
    finally:
        await queue.close()


async def test_publish_stores_in_order_and_acknowledges_each(transport: Transport) -> None:
    messages = [out(n, traceparent=f"00-{n:032x}-{n:016x}-01") for n in range(20)]
    assert await transport.publish(messages) == [None] * 20

    queue = await transport.queue(spec(start="all"))
    got = await take(queue, 20)
    assert [d.data for d in got] == [m.payload for m in messages]
    assert all(d.attempt == 1 for d in got)
    assert got[3].headers["Nats-Msg-Id"] == messages[3].message_id
    assert got[3].headers["traceparent"] == messages[3].traceparent


async def test_a_repeated_message_id_is_acknowledged_and_stored_once(
        transport: Transport) -> None:
    first, second = out(1), out(2)
    assert await transport.publish([first, second]) == [None, None]
    assert await transport.publish([first, second, out(3)]) == [None, None, None]
    assert await everything(transport) == [b"1", b"2", b"3"]


async def test_stored_ids_tells_which_messages_the_broker_holds(transport: Transport) -> None:
    held, missing = [out(1), out(2)], out(3)
    await transport.publish(held)
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert await transport.stored_ids([*held, missing], since) == {m.message_id for m in held}


async def test_an_unroutable_message_is_refused_and_the_rest_are_stored(
        transport: Transport) -> None:
    """Judged per message: no stream for the subject, or a payload over the limit, is a
    permanent refusal with its reason; the messages around it are stored, in order."""
    too_big = Outgoing("big", SUBJECT, b"x" * (MAX_MESSAGE_BYTES + 1))
    outcomes = await transport.publish([out(1), out(2, subject="elsewhere.x"), out(3),
                                        too_big, out(4)])
    assert outcomes[0] is None and outcomes[2] is None and outcomes[4] is None
    assert outcomes[1] is not None and "no stream" in outcomes[1]
    assert outcomes[3] is not None and "limit" in outcomes[3]
    assert await everything(transport) == [b"1", b"3", b"4"]


async def test_a_new_queue_receives_what_is_published_after_it_exists(
        transport: Transport) -> None:
    await transport.publish([out(1)])
    queue = await transport.queue(spec())
    await transport.publish([out(2), out(3, subject=OTHER), out(4)])
    got = await take(queue, 2)
    assert [d.data for d in got] == [b"2", b"4"], "not before it, nor other subjects"
    for delivery in got:
        await delivery.ack()
    assert await queue.fetch(5, timeout=0.2) == []


async def test_a_durable_queue_is_shared_and_keeps_its_place(transport: Transport) -> None:
    one, two = await transport.queue(spec()), await transport.queue(spec())
    await transport.publish([out(n) for n in range(10)])
    first = await take(one, 4)
    second = await take(two, 6)
    seen = [d.data for d in first + second]
    assert sorted(seen) == sorted(f"{n}".encode() for n in range(10)), "each once"
    for delivery in first + second:
        await delivery.ack()
    await one.close()
    await two.close()

    again = await transport.queue(spec())  # a process restarted on the same queue
    await transport.publish([out(10)])
    assert [d.data for d in await take(again, 1)] == [b"10"]


async def test_separate_queues_each_get_everything(transport: Transport) -> None:
    a, b = await transport.queue(spec("a")), await transport.queue(spec("b"))
    await transport.publish([out(1), out(2)])
    assert [d.data for d in await take(a, 2)] == [b"1", b"2"]
    assert [d.data for d in await take(b, 2)] == [b"1", b"2"]


async def test_a_nak_redelivers_after_its_delay_with_the_attempt_count(
        transport: Transport) -> None:
    queue = await transport.queue(spec())
    await transport.publish([out(1)])
    (delivery,) = await take(queue, 1)
    await delivery.nak(0.5)
    assert await queue.fetch(5, timeout=0.1) == [], "not before its delay"
    (again,) = await take(queue, 1)
    assert again.data == b"1" and again.attempt == 2
    await again.ack()
    await pending_becomes(queue, (0, 0))


async def test_term_drops_a_message_that_a_missing_ack_would_redeliver(
        transport: Transport) -> None:
    queue = await transport.queue(spec(ack_wait=0.5))
    await transport.publish([out(1), out(2)])
    dropped, forgotten = await take(queue, 2)
    await dropped.term()
    # Neither acked nor termed: redelivered once ack_wait passes. Its redelivery proves
    # the broker had its chance to redeliver the termed one too.
    (again,) = await take(queue, 1)
    assert (again.data, again.attempt) == (forgotten.data, 2)
    await again.ack()
    await transport.publish([out(3)])
    (later,) = await take(queue, 1)
    assert later.data == b"3"
    await later.ack()
    assert await queue.fetch(5, timeout=0.7) == [], "past ack_wait again: nothing is back"


async def test_the_in_flight_limit_holds_back_the_rest(transport: Transport) -> None:
    queue = await transport.queue(spec(max_in_flight=3))
    await transport.publish([out(n) for n in range(5)])
    got = await take(queue, 10, timeout=1.0)
    assert len(got) == 3
    assert await queue.fetch(10, timeout=0.2) == []
    assert await queue.pending() == (2, 3)

    await got[0].ack()
    more = await take(queue, 1)
    assert [d.data for d in more] == [b"3"]
    await pending_becomes(queue, (1, 3))


async def test_a_retry_subject_reaches_only_its_own_queue(transport: Transport) -> None:
    mine, theirs = await transport.queue(spec("mine")), await transport.queue(spec("theirs"))
    await transport.publish([out(1, subject=retry_subject(SUBJECT, "mine")), out(2)])
    assert [d.data for d in await take(mine, 2)] == [b"1", b"2"]
    assert [d.data for d in await take(theirs, 1)] == [b"2"], "the retry came first"
    assert await theirs.fetch(5, timeout=0.2) == []


async def test_dead_letters_are_stored_with_their_headers(transport: Transport) -> None:
    headers = {"Nats-Msg-Id": "dead-1", "Pizza-Dead-Reason": "malformed"}
    await transport.dead_letter(DEAD, b"{broken", headers)
    await transport.dead_letter(DEAD, b"{broken", headers)  # the same id: stored once
    queue = await transport.queue(spec("dead-reader", DEAD, start="all"))
    (dead,) = await take(queue, 1)
    assert dead.data == b"{broken" and dead.subject == DEAD
    assert dead.headers["Pizza-Dead-Reason"] == "malformed"
    assert await queue.fetch(5, timeout=0.2) == []
    assert await everything(transport) == [], "not on the subjects consumers read"


async def test_the_key_value_store_keeps_the_latest_value_per_key(
        transport: Transport) -> None:
    assert await transport.kv_entries("PIZZA_TEST") == {}
    await transport.kv_put("PIZZA_TEST", "kitchen", b"v1")
    await transport.kv_put("PIZZA_TEST", "kitchen", b"v2")
    await transport.kv_put("PIZZA_TEST", "orders", b"v1")
    assert await transport.kv_entries("PIZZA_TEST") == {"kitchen": b"v2", "orders": b"v1"}
    await transport.kv_delete("PIZZA_TEST", "kitchen")
    assert await transport.kv_entries("PIZZA_TEST") == {"orders": b"v1"}


async def test_a_deleted_queue_starts_again_from_its_declared_start(
        transport: Transport) -> None:
    await transport.publish([out(1)])
    queue = await transport.queue(spec(start="all"))
    for delivery in await take(queue, 1):
        await delivery.ack()
    await queue.close()
    await transport.delete_queue(spec(start="all"))
    replayed = await transport.queue(spec(start="all"))
    assert [d.data for d in await take(replayed, 1)] == [b"1"], "a replay sees history"


async def test_while_the_broker_is_away_nothing_is_settled_and_then_it_all_resumes(
        transport: Transport, outage: Outage) -> None:
    queue = await transport.queue(spec())
    await outage.begin()
    assert await transport.publish([out(1)], timeout=1.0) == [], "in doubt, not settled"
    await outage.end()

    assert await transport.publish([out(2)]) == [None]
    got = await take(queue, 1, timeout=10.0)
    # A message in doubt may have gone out after all (the relay sends it again and the
    # duplicate window drops the copy); the one settled after the outage surely did.
    assert [d.data for d in got] in ([b"1"], [b"2"])
    for delivery in got:
        await delivery.ack()
    stored = await everything(transport)
    assert stored in ([b"2"], [b"1", b"2"])
