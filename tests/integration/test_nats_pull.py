"""How a NATS queue pulls (NatsQueue's own pull requests, not nats-py's fetch): a fetch
that waits returns at the first message, what arrives after it is the next fetch's in
order, and messages delivered but never fetched are handed back when the queue closes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pizza.eventing.transport.base import Outgoing, QueueSpec
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport

SUBJECT = "pizza.events.kitchen.OrderPrepared.v1"


@pytest.fixture
async def transport(tmp_path: Path) -> AsyncIterator[NatsTransport]:
    async with EmbeddedNats(tmp_path / "nats") as server:
        real = NatsTransport(server.url)
        await real.start()
        try:
            yield real
        finally:
            await real.close()


def out(n: int) -> Outgoing:
    return Outgoing(message_id=f"m{n}-{uuid.uuid4().hex[:6]}", subject=SUBJECT,
                    payload=f"{n}".encode())


async def test_a_waiting_fetch_returns_at_the_first_message(transport: NatsTransport) -> None:
    queue = await transport.queue(QueueSpec("kitchen-q", SUBJECT))
    try:
        assert await queue.fetch(10, timeout=0.2) == [], "nothing there: empty at timeout"
        waiting = asyncio.create_task(queue.fetch(10, timeout=5.0))
        await asyncio.sleep(0.2)  # the request waits on the server now
        began = time.monotonic()
        assert await transport.publish([out(1)]) == [None]
        first = await waiting
        assert time.monotonic() - began < 2.0, "returned at the message, not the timeout"
        assert [d.data for d in first] == [b"1"]
        assert await transport.publish([out(n) for n in range(2, 6)]) == [None] * 4
        got = [d.data for d in first]
        for delivery in first:
            await delivery.ack()
        deadline = time.monotonic() + 5.0
        while len(got) < 5 and time.monotonic() < deadline:
            batch = await queue.fetch(10, timeout=0.5)
            got += [d.data for d in batch]
            for delivery in batch:
                await delivery.ack()
        assert got == [b"1", b"2", b"3", b"4", b"5"], "each once, in the stream's order"
    finally:
        await queue.close()


async def test_messages_never_fetched_are_handed_back_at_close(
        transport: NatsTransport) -> None:
    spec = QueueSpec("kitchen-q", SUBJECT, ack_wait=60.0)
    queue = await transport.queue(spec)
    waiting = asyncio.create_task(queue.fetch(10, timeout=5.0))
    await asyncio.sleep(0.2)
    assert await transport.publish([out(1)]) == [None]
    first = await waiting
    await first[0].ack()
    # The request still open on the server delivers these, but no fetch takes them.
    assert await transport.publish([out(2), out(3)]) == [None, None]
    await asyncio.sleep(0.5)
    await queue.close()

    again = await transport.queue(spec)
    try:
        began = time.monotonic()
        got: list[bytes] = []
        while len(got) < 2 and time.monotonic() - began < 10.0:
            batch = await again.fetch(10, timeout=0.5)
            got += [d.data for d in batch]
            for delivery in batch:
                await delivery.ack()
        assert got == [b"2", b"3"]
        assert time.monotonic() - began < 10.0, "not left to wait out the 60 s ack timer"
    finally:
        await again.close()
