"""How a NATS queue pulls (NatsQueue's own pull requests, not nats-py's fetch), as
nats-py's fetch did: what is there, up to the batch, at once; when nothing was, what
comes first, as soon as it comes; each once, in order. Messages delivered but never
fetched are handed back when the queue closes."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_a_fetch_takes_what_is_there_or_waits_for_what_comes(
        transport: NatsTransport) -> None:
    queue = await transport.queue(QueueSpec("kitchen-q", SUBJECT))
    try:
        assert await queue.fetch(10, timeout=0.2) == [], "nothing there: empty at timeout"
        waiting = asyncio.create_task(queue.fetch(3, timeout=5.0))
        await asyncio.sleep(0.2)  # its request waits on the server now
        began = time.monotonic()
        assert await transport.publish([out(1), out(2), out(3), out(4)]) == [None] * 4
        full = await waiting
        assert time.monotonic() - began < 2.0, "a full batch does not wait for the timeout"
        assert [d.data for d in full] == [b"1", b"2", b"3"]

        began = time.monotonic()
        there = await queue.fetch(10, timeout=5.0)
        assert [d.data for d in there] == [b"4"], "what is there, at once"
        assert time.monotonic() - began < 2.0

        waiting = asyncio.create_task(queue.fetch(10, timeout=5.0))  # nothing there
        await asyncio.sleep(0.2)
        began = time.monotonic()
        assert await transport.publish([out(5)]) == [None]
        first = await waiting
        assert [d.data for d in first] == [b"5"], "a waiting fetch returns at what comes"
        assert time.monotonic() - began < 2.0
        assert await transport.publish([out(6)]) == [None]
        rest = await queue.fetch(10, timeout=5.0)
        assert [d.data for d in rest] == [b"6"]
        for delivery in full + there + first + rest:
            await delivery.ack()
        assert await queue.fetch(10, timeout=0.3) == [], "each message once"
    finally:
        await queue.close()


async def test_messages_never_fetched_are_handed_back_at_close(
        transport: NatsTransport) -> None:
    spec = QueueSpec("kitchen-q", SUBJECT, ack_wait=60.0)
    queue = await transport.queue(spec)
    waiting = asyncio.create_task(queue.fetch(10, timeout=5.0))
    await asyncio.sleep(0.3)  # its request waits on the server now
    waiting.cancel()  # a consumer stopped in the middle of a fetch
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    # The request still open on the server delivers these, but no fetch takes them.
    assert await transport.publish([out(1), out(2)]) == [None, None]
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
        assert got == [b"1", b"2"]
        assert time.monotonic() - began < 10.0, "not left to wait out the 60 s ack timer"
    finally:
        await again.close()
