"""`pizza deadletters` against a real broker: list, show, drop, and a retry that goes back
to the consumer that failed, and only to it, with the message id kept."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from pizza.eventing import Backoff, Context, Event, Service, ServiceHost, event
from pizza.eventing.transport.base import retry_subject
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport

PIZZA = str(Path(sys.executable).parent / "pizza")
SUBJECT = "pizza.events.depot.ParcelScanned.v1"


@event("ParcelScanned", version=1, source="depot")
class ParcelScannedV1(Event):
    parcel: int


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


class Depot:
    """A producer and two consumers of one subject; the scanner fails while jammed."""

    def __init__(self, server: EmbeddedNats) -> None:
        self.server = server
        self.transport = NatsTransport(server.url)
        self.jammed = True
        self.handled: dict[str, list[int]] = {"scanner": [], "ledger": []}
        self.hosts: dict[str, ServiceHost] = {}

    def service(self, name: str, *, fails: bool) -> Service:
        service = Service(name)

        @service.handles(ParcelScannedV1, max_attempts=2,
                         backoff=Backoff(initial=0.05, maximum=0.1))
        async def scan(parcel: ParcelScannedV1, ctx: Context) -> None:
            if fails and self.jammed:
                raise ValueError("scanner jammed")
            self.handled[name].append(parcel.parcel)

        return service

    async def start(self) -> None:
        await self.transport.start()
        for service in (self.service("scanner", fails=True),
                        self.service("ledger", fails=False), Service("depot")):
            host = ServiceHost(service, self.transport, relay_interval=0.1)
            await host.start()
            self.hosts[service.name] = host

    async def stop(self) -> None:
        for host in reversed(self.hosts.values()):
            await host.stop()
        await self.transport.close()

    async def publish(self, parcel: int) -> None:
        async with self.hosts["depot"].unit_of_work() as ctx:
            ctx.publish(ParcelScannedV1(parcel=parcel))

    async def raw(self, verb: Callable[[Any], Awaitable[Any]]) -> Any:
        nc = await nats.connect(self.server.url)
        try:
            return await verb(nc.jetstream())
        finally:
            await nc.close()

    async def dead_letters(self) -> int:
        info = await self.raw(lambda js: js.stream_info("PIZZA_DEADLETTERS"))
        return int(info.state.messages)

    async def pizza(self, *args: str) -> tuple[int, str]:
        """Run `pizza ARGS` as an operator would, against this broker."""
        tool = await asyncio.create_subprocess_exec(
            PIZZA, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PIZZA_NATS_URL": self.server.url, "COLUMNS": "250"})
        out, _ = await asyncio.wait_for(tool.communicate(), 60)
        assert tool.returncode is not None
        return tool.returncode, out.decode()


@pytest.fixture
async def depot(nats_server: EmbeddedNats, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Depot]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    depot = Depot(nats_server)
    await depot.start()
    yield depot
    await depot.stop()


async def dead_letter(depot: Depot, seq: int) -> Any:
    return await depot.raw(lambda js: js.get_msg("PIZZA_DEADLETTERS", seq))


async def test_retry_goes_back_only_to_the_consumer_that_failed(depot: Depot) -> None:
    await depot.publish(7)
    await eventually(lambda: _is(depot.dead_letters(), 1))
    await eventually(lambda: _true(depot.handled["ledger"] == [7]))
    assert depot.handled["scanner"] == []

    code, listing = await depot.pizza("deadletters", "list")
    assert code == 0, listing
    row = next(line for line in listing.splitlines() if "scanner-scan" in line)
    seq = int(row.split("│")[1])
    assert "handler-failed" in row and "ParcelScanned v1" in row
    letter = await dead_letter(depot, seq)
    message_id = orjson.loads(letter.data)["metadata"]["id"]

    code, shown = await depot.pizza("deadletters", "show", message_id)
    assert code == 0, shown
    for fact in (f"dead letter {seq}", "scanner-scan", SUBJECT, "handler-failed",
                 "ValueError: scanner jammed", '"parcel": 7', message_id):
        assert fact in shown, (fact, shown)

    depot.jammed = False  # the cause is fixed; now send it back
    code, out = await depot.pizza("deadletters", "retry", str(seq))
    assert code == 0, out
    assert "1 dead letter(s) sent back" in out

    await eventually(lambda: _true(depot.handled["scanner"] == [7]))
    assert await depot.dead_letters() == 0, "the retry dead-lettered again"
    retried = await depot.raw(lambda js: js.get_last_msg(
        "PIZZA_EVENTS", retry_subject(SUBJECT, "scanner-scan")))
    assert retried.data == letter.data, "the payload (and its metadata.id) must not change"
    assert retried.headers["Nats-Msg-Id"] == f"{message_id}.retry.scanner-scan.{seq}"

    # The other consumer never sees the retry: a later message reaches it, after which
    # its queue is empty and it met no copy of parcel 7.
    await depot.publish(8)
    await eventually(lambda: _true(depot.handled["ledger"] == [7, 8]))
    await eventually(lambda: _true(depot.handled["scanner"] == [7, 8]))
    ledger = depot.hosts["ledger"].consumers[0]
    await eventually(lambda: _idle(ledger))
    assert ledger.stats.duplicates == 0, "the ledger was sent the scanner's retry"
    assert ledger.stats.handled == 2
    assert depot.hosts["scanner"].consumers[0].stats.handled == 2
    assert await depot.dead_letters() == 0


async def test_show_and_drop_name_a_dead_letter_by_its_number(depot: Depot) -> None:
    await depot.raw(lambda js: js.publish(SUBJECT, b"{not json",
                                          headers={"Nats-Msg-Id": "garbage-1"}))
    await eventually(lambda: _is(depot.dead_letters(), 2))  # both consumers refuse it
    code, listing = await depot.pizza("deadletters", "list", "--service", "scanner")
    assert code == 0, listing
    rows = [line for line in listing.splitlines() if "scan" in line and "│" in line]
    assert len(rows) == 1 and "malformed" in rows[0] and "ledger" not in rows[0], listing
    seq = int(rows[0].split("│")[1])

    code, shown = await depot.pizza("deadletters", "show", str(seq))
    assert code == 0, shown
    assert "{not json" in shown and "malformed" in shown and "(unreadable)" in shown

    code, out = await depot.pizza("deadletters", "drop", str(seq))
    assert code == 0, out
    assert await depot.dead_letters() == 1
    code, out = await depot.pizza("deadletters", "show", str(seq))
    assert code == 1 and f"no dead letter {seq}" in out and "Traceback" not in out, out
    code, listing = await depot.pizza("deadletters", "list")
    assert "ledger-scan" in listing and "scanner-scan" not in listing, listing


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def _true(value: bool) -> bool:
    return value


async def _idle(consumer: Any) -> bool:
    waiting, in_flight = await consumer.queue.pending()
    return bool(waiting == 0 and in_flight == 0)


async def test_retry_of_all_leaves_what_no_consumer_failed(depot: Depot) -> None:
    """An outbox row the broker refused has no consumer to go back to: it stays, said so."""
    await depot.raw(lambda js: js.publish(
        "pizza.deadletters.depot.outbox", b'{"metadata": {"id": "x"}',
        headers={"Nats-Msg-Id": "dead-outbox-x", "Pizza-Dead-Reason": "unpublishable",
                 "Pizza-Dead-Error": "no stream for pizza.nowhere",
                 "Pizza-Original-Subject": "pizza.nowhere", "Pizza-Consumer": "depot-outbox",
                 "Pizza-Truncated-From": "2000000"}))
    await depot.publish(9)
    await eventually(lambda: _is(depot.dead_letters(), 2))
    depot.jammed = False

    code, out = await depot.pizza("deadletters", "retry")
    assert code == 0, out
    assert "1 dead letter(s) sent back" in out and "1 not retried" in out, out
    await eventually(lambda: _true(depot.handled["scanner"] == [9]))
    assert await depot.dead_letters() == 1
    code, listing = await depot.pizza("deadletters", "list")
    assert "depot-outbox" in listing and "scanner-scan" not in listing, listing
