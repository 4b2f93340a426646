"""The consumer's side of a broker outage, on the memory transport: a queue that cannot
be fetched from is waited for, with one log line when it starts and one when it ends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from pizza.eventing import Context, Event, Service, ServiceHost, event
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.base import Delivery, Outgoing, Queue
from pizza.eventing.transport.memory import MemoryTransport


@event("OutageProbed", version=1, source="prober")
class ProbedV1(Event):
    number: int


class FlakyQueue(Queue):
    """Fails its first ``failures`` fetches, as a queue whose broker is away."""

    def __init__(self, inner: Queue, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("nats: connection closed")
        return await self.inner.fetch(batch, timeout)

    async def pending(self) -> tuple[int, int]:
        return await self.inner.pending()


async def test_a_fetch_outage_is_logged_once_and_the_queue_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    caplog.set_level(logging.INFO, logger="pizza")
    metadata = MetaData()
    seen = Table("seen", metadata, Column("number", Integer, primary_key=True))
    service = Service("prober", tables=metadata)

    @service.handles(ProbedV1)
    async def probe(event: ProbedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(seen).values(number=event.number))

    transport = MemoryTransport()
    host = ServiceHost(service, transport, relay_interval=0.05)
    consumer = host.consumers[0]
    flaky: list[FlakyQueue] = []
    opened = consumer.open

    async def open_flaky() -> None:
        await opened()
        assert consumer.queue is not None
        flaky.append(FlakyQueue(consumer.queue, failures=6))
        consumer.queue = flaky[0]

    consumer.open = open_flaky  # type: ignore[method-assign]
    await host.start()
    try:
        env = Envelope(Metadata(type="OutageProbed", version=1, source="prober"),
                       {"number": 1})
        await transport.publish([Outgoing(env.metadata.id, ProbedV1.info.subject,
                                          env.encode())])

        async def handled() -> bool:
            async with host.db.read() as conn:
                return list(await conn.scalars(select(seen.c.number))) == [1]

        deadline = asyncio.get_running_loop().time() + 15
        while not await handled():
            assert asyncio.get_running_loop().time() < deadline, "never handled"
            await asyncio.sleep(0.05)
        assert flaky[0].failures == 0, "the outage happened"
        lines = [(r.levelname, r.getMessage()) for r in caplog.records
                 if r.name == "pizza.eventing.consumer"]
        assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    finally:
        await host.stop()
