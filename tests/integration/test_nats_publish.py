"""How NatsTransport publishes (its own replies and acks, not nats-py's publish_async): a
batch larger than the window of unanswered messages is stored whole and in order, and a
subject whose stream went away is a refusal with its reason, the rest still stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pizza.eventing.transport import nats as nats_transport
from pizza.eventing.transport.base import Outgoing, QueueSpec
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport

SUBJECT = "pizza.events.kitchen.OrderPrepared.v1"
COMMAND = "pizza.commands.kitchen.OpenTicket.v1"


@pytest.fixture
async def transport(tmp_path: Path) -> AsyncIterator[NatsTransport]:
    async with EmbeddedNats(tmp_path / "nats") as server:
        real = NatsTransport(server.url)
        await real.start()
        try:
            yield real
        finally:
            await real.close()


def out(n: int, subject: str = SUBJECT) -> Outgoing:
    return Outgoing(message_id=f"m{n}-{uuid.uuid4().hex[:6]}", subject=subject,
                    payload=f"{n}".encode())


async def stored(transport: NatsTransport, subject: str = SUBJECT) -> list[bytes]:
    queue = await transport.queue(QueueSpec(f"r-{uuid.uuid4().hex[:8]}", subject,
                                            max_in_flight=1000, start="all"))
    try:
        got = await queue.fetch(1000, timeout=1.0)
        for delivery in got:
            await delivery.ack()
        return [d.data for d in got]
    finally:
        await queue.close()


async def test_a_batch_beyond_the_window_is_stored_whole_and_in_order(
        transport: NatsTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_transport, "PUBLISH_WINDOW", 7)
    messages = [out(n) for n in range(60)]
    assert await transport.publish(messages) == [None] * 60
    assert await transport.publish(messages[:5]) == [None] * 5, "a repeat is acknowledged"
    assert await stored(transport) == [m.payload for m in messages], "and stored once"


async def test_a_subject_whose_stream_is_gone_is_refused_and_the_rest_stored(
        transport: NatsTransport) -> None:
    js = transport.js
    name = await js.find_stream_name_by_subject(COMMAND)
    if name == await js.find_stream_name_by_subject(SUBJECT):
        pytest.skip("events and commands share a stream here")
    await js.delete_stream(name)
    outcomes = await transport.publish([out(1), out(2, COMMAND), out(3)])
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1] is not None and "no stream" in outcomes[1]
    assert await stored(transport) == [b"1", b"3"]
