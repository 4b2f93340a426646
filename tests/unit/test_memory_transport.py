"""The in-memory transport keeps JetStream's semantics that the kernel relies on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pizza.eventing.catalog import subject_matches
from pizza.eventing.transport.base import BrokerUnavailable, Outgoing, QueueSpec
from pizza.eventing.transport.memory import MemoryTransport

SUBJECT = "pizza.events.kitchen.OrderPrepared.v1"


def out(n: int, subject: str = SUBJECT) -> Outgoing:
    return Outgoing(message_id=f"m{n}", subject=subject, payload=f"{n}".encode())


def spec(name: str = "kitchen-q", subject: str = SUBJECT, **options: Any) -> QueueSpec:
    return QueueSpec(name=name, subject=subject, **options)


def test_subject_matching() -> None:
    assert subject_matches("pizza.events.>", "pizza.events.kitchen.X.v1")
    assert not subject_matches("pizza.events.>", "pizza.events")
    assert subject_matches("pizza.*.kitchen.X.v1", "pizza.events.kitchen.X.v1")
    assert not subject_matches("pizza.*.X", "pizza.events.kitchen.X")
    assert not subject_matches("pizza.events.a", "pizza.events.a.b")


async def test_publish_stores_in_order_with_headers() -> None:
    transport = MemoryTransport()
    first = Outgoing("m1", SUBJECT, b"1", traceparent="00-abc-def-01")
    assert await transport.publish([first, out(2), out(3)]) == [None, None, None]
    stored = transport.messages("PIZZA_EVENTS")
    assert [payload for _, payload, _ in stored] == [b"1", b"2", b"3"]
    assert stored[0][2] == {"Nats-Msg-Id": "m1", "traceparent": "00-abc-def-01"}
    assert transport.messages("pizza.events.kitchen") == stored
    assert transport.messages("PIZZA_COMMANDS") == []

    queue = await transport.queue(spec(start="all"))
    got = await queue.fetch(10, timeout=0.1)
    assert [d.data for d in got] == [b"1", b"2", b"3"]
    assert all(d.attempt == 1 for d in got)
    assert got[0].headers["Nats-Msg-Id"] == "m1"
    assert got[0].headers["traceparent"] == "00-abc-def-01"


async def test_a_subject_no_stream_holds_is_refused_and_the_rest_go_on() -> None:
    transport = MemoryTransport()
    outcomes = await transport.publish([out(1), out(2, subject="elsewhere.x"), out(3)])
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1] is not None and "no stream" in outcomes[1]
    assert [p for _, p, _ in transport.messages("PIZZA_EVENTS")] == [b"1", b"3"]


async def test_duplicates_are_dropped_but_acknowledged() -> None:
    transport = MemoryTransport()
    assert await transport.publish([out(1), out(2)]) == [None, None]
    assert await transport.publish([out(1), out(2), out(3)]) == [None, None, None]
    assert [p for _, p, _ in transport.messages("PIZZA_EVENTS")] == [b"1", b"2", b"3"]


async def test_duplicate_window_expires() -> None:
    transport = MemoryTransport(duplicate_window=0.05)
    await transport.publish([out(1)])
    await asyncio.sleep(0.06)
    await transport.publish([out(1)])
    assert len(transport.messages("PIZZA_EVENTS")) == 2


async def test_start_new_skips_history_and_filter_applies() -> None:
    transport = MemoryTransport()
    await transport.publish([out(1)])
    queue = await transport.queue(spec())
    other = "pizza.events.kitchen.OrderCancelled.v1"
    await transport.publish([out(2), out(3, subject=other), out(4)])
    assert await queue.pending() == (2, 0)
    assert [d.data for d in await queue.fetch(10, timeout=0.1)] == [b"2", b"4"]
    assert await queue.pending() == (0, 2)

    wildcard = await transport.queue(
        spec("all-kitchen", subject="pizza.events.kitchen.*.v1", start="all")
    )
    assert [d.data for d in await wildcard.fetch(10, timeout=0.1)] == [b"1", b"2", b"3", b"4"]


async def test_fetch_waits_for_a_publish() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec())

    async def later() -> None:
        await asyncio.sleep(0.05)
        await transport.publish([out(1)])

    task = asyncio.create_task(later())
    started = time.monotonic()
    got = await queue.fetch(5, timeout=2.0)
    assert [d.data for d in got] == [b"1"]
    assert time.monotonic() - started < 1.0
    await task


async def test_fetch_times_out_empty() -> None:
    queue = await MemoryTransport().queue(spec())
    started = time.monotonic()
    assert await queue.fetch(5, timeout=0.05) == []
    assert time.monotonic() - started >= 0.04


async def test_shared_durable_never_delivers_twice() -> None:
    transport = MemoryTransport()
    one, two = await transport.queue(spec()), await transport.queue(spec())
    await transport.publish([out(n) for n in range(10)])
    first = await one.fetch(4, timeout=0.1)
    second = await two.fetch(10, timeout=0.1)
    assert len(first) == 4 and len(second) == 6
    seen = [d.data for d in first + second]
    assert len(set(seen)) == 10
    assert await one.fetch(10, timeout=0.01) == []
    assert await two.pending() == (0, 10)


async def test_separate_durables_each_get_everything() -> None:
    transport = MemoryTransport()
    a, b = await transport.queue(spec("a")), await transport.queue(spec("b"))
    await transport.publish([out(1), out(2)])
    assert len(await a.fetch(10, timeout=0.1)) == 2
    assert len(await b.fetch(10, timeout=0.1)) == 2


async def test_in_flight_limit() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec(max_in_flight=3))
    await transport.publish([out(n) for n in range(5)])
    got = await queue.fetch(10, timeout=0.1)
    assert len(got) == 3
    assert await queue.fetch(10, timeout=0.01) == []
    assert await queue.pending() == (2, 3)

    await got[0].ack()
    more = await queue.fetch(10, timeout=0.1)
    assert [d.data for d in more] == [b"3"]


async def test_ack_wakes_a_fetch_blocked_by_the_limit() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec(max_in_flight=1))
    await transport.publish([out(1), out(2)])
    (first,) = await queue.fetch(5, timeout=0.1)
    waiting = asyncio.create_task(queue.fetch(5, timeout=2.0))
    await asyncio.sleep(0.01)
    await first.ack()
    assert [d.data for d in await waiting] == [b"2"]


async def test_nak_redelivers_after_delay_with_attempt_count() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec())
    await transport.publish([out(1)])
    (delivery,) = await queue.fetch(5, timeout=0.1)
    await delivery.nak(0.05)
    assert await queue.fetch(5, timeout=0.01) == []
    assert await queue.pending() == (0, 1)

    (again,) = await queue.fetch(5, timeout=1.0)
    assert again.data == b"1" and again.attempt == 2
    await again.nak(0)
    (third,) = await queue.fetch(5, timeout=0.1)
    assert third.attempt == 3
    await third.ack()
    assert await queue.pending() == (0, 0)
    assert await queue.fetch(5, timeout=0.01) == []


async def test_redeliveries_come_before_new_messages() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec())
    await transport.publish([out(1)])
    (delivery,) = await queue.fetch(5, timeout=0.1)
    await delivery.nak(0)
    await transport.publish([out(2)])
    got = await queue.fetch(5, timeout=0.1)
    assert [(d.data, d.attempt) for d in got] == [(b"1", 2), (b"2", 1)]


async def test_term_drops_for_good() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec(ack_wait=0.02))
    await transport.publish([out(1)])
    (delivery,) = await queue.fetch(5, timeout=0.1)
    await delivery.term()
    assert await queue.pending() == (0, 0)
    assert await queue.fetch(5, timeout=0.05) == []


async def test_ack_wait_expiry_redelivers() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec(ack_wait=0.05))
    await transport.publish([out(1)])
    (delivery,) = await queue.fetch(5, timeout=0.1)
    assert await queue.fetch(5, timeout=0.01) == []
    (again,) = await queue.fetch(5, timeout=1.0)
    assert again.data == b"1" and again.attempt == 2
    await delivery.ack()  # a late ack of the earlier delivery still settles the message
    assert await queue.pending() == (0, 0)
    assert await queue.fetch(5, timeout=0.1) == []


async def test_broker_down() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec())
    transport.go_down()
    assert not transport.connected
    assert await transport.publish([out(1)]) == []
    with pytest.raises(BrokerUnavailable):
        await transport.dead_letter("pizza.deadletters.kitchen", b"x", {})
    with pytest.raises(BrokerUnavailable):
        await transport.queue(spec("other"))
    assert transport.messages("PIZZA_EVENTS") == []

    waiting = asyncio.create_task(queue.fetch(5, timeout=2.0))
    transport.come_back()
    assert transport.connected
    assert await transport.publish([out(1)]) == [None]
    assert [d.data for d in await waiting] == [b"1"]


async def test_fetch_returns_nothing_while_down() -> None:
    transport = MemoryTransport()
    queue = await transport.queue(spec())
    await transport.publish([out(1)])
    transport.broker_down = True
    assert await queue.fetch(5, timeout=0.02) == []
    transport.broker_down = False
    assert len(await queue.fetch(5, timeout=0.1)) == 1


async def test_dead_letters_go_to_their_stream() -> None:
    transport = MemoryTransport()
    headers = {"Pizza-Dead-Reason": "poison"}
    await transport.dead_letter("pizza.deadletters.kitchen", b"bad", headers)
    assert transport.messages("PIZZA_DEADLETTERS") == [
        ("pizza.deadletters.kitchen", b"bad", headers)
    ]
    assert transport.messages("PIZZA_EVENTS") == []
    with pytest.raises(ValueError):
        await transport.dead_letter(SUBJECT, b"bad", headers)
