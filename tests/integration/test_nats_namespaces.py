"""Two systems on one nats-server, told apart by their namespaces: the same services, the
same event type, the same queue names, and yet each consumer gets only its own system's
messages, and each system's streams, dead letters and live registry are its own.

The test runs its own nats-server (``nats_server``), so it shares no stream with anyone.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import nats
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

import harness
from pizza.eventing import Context, Event, Reject, Service, event
from pizza.eventing.host import Runtime
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.transport.embedded import EmbeddedNats

eventually = functools.partial(harness.eventually, timeout=20.0)


@event("KilnFired", version=1, source="potter")
class KilnFiredV1(Event):
    number: int
    system: str


def potter() -> Service:
    """Publishes KilnFired (from an HTTP-like unit of work in the test)."""
    service = Service("potter", tables=MetaData())
    service.declare_publishes(KilnFiredV1)
    return service


def gallery() -> tuple[Service, Table]:
    """Consumes KilnFired: records each, and rejects a negative number (a dead letter)."""
    metadata = MetaData()
    seen = Table("seen", metadata, Column("number", Integer, primary_key=True),
                 Column("system", String(20), nullable=False))
    service = Service("gallery", tables=metadata)

    @service.handles(KilnFiredV1, name="hang")
    async def hang(event: KilnFiredV1, ctx: Context) -> None:
        if event.number < 0:
            raise Reject(f"cracked pot {event.number}")
        await ctx.db.execute(insert(seen).values(number=event.number, system=event.system))

    return service, seen


async def seen_by(runtime: Runtime, table: Table) -> list[tuple[int, str]]:
    async with runtime.hosts["gallery"].db.read() as conn:
        return sorted((row.number, row.system) for row in await conn.execute(select(table)))


async def start(namespace: Namespace, url: str, home: Path,
                monkeypatch: pytest.MonkeyPatch) -> tuple[Runtime, Table]:
    # Each system has its own databases (the same service names: the same file names).
    monkeypatch.setenv("PIZZA_HOME", str(home))
    service, table = gallery()
    runtime = Runtime([potter(), service], nats_url=url, namespace=namespace,
                      relay_interval=0.1)
    await runtime.start()
    return runtime, table


async def fire(runtime: Runtime, numbers: list[int]) -> None:
    async with runtime.hosts["potter"].unit_of_work() as ctx:
        for number in numbers:
            ctx.publish(KilnFiredV1(number=number, system=str(runtime.namespace)))


async def test_two_namespaces_on_one_server_never_meet(
        nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = Namespace("acme")
    ours, our_seen = await start(DEFAULT, nats_server.url, tmp_path / "pizza", monkeypatch)
    theirs, their_seen = await start(acme, nats_server.url, tmp_path / "acme", monkeypatch)
    try:
        await asyncio.gather(fire(ours, [1, 2, 3, -1]), fire(theirs, [101, 102, -101]))

        def dead_lettered(runtime: Runtime) -> int:
            return runtime.hosts["gallery"].consumers[0].stats.dead_lettered

        async def each_handled_its_four() -> bool:
            return (len(await seen_by(ours, our_seen)) + dead_lettered(ours) >= 4
                    and len(await seen_by(theirs, their_seen)) + dead_lettered(theirs) >= 3)

        await eventually(each_handled_its_four, what="each system's messages handled")
        await fire(theirs, [103])  # one more, after all of ours were handled

        async def theirs_handled_it() -> bool:
            return (103, "acme") in await seen_by(theirs, their_seen)

        await eventually(theirs_handled_it, what="acme's last message handled")
        await asyncio.sleep(0.5)  # time for a stray delivery to arrive, were there one
        assert await seen_by(ours, our_seen) == [(1, "pizza"), (2, "pizza"), (3, "pizza")]
        assert await seen_by(theirs, their_seen) == [(101, "acme"), (102, "acme"),
                                                     (103, "acme")]
        assert (dead_lettered(ours), dead_lettered(theirs)) == (1, 1)

        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            streams = {info.config.name: info for info in await js.streams_info()}
            for name in ("PIZZA_EVENTS", "PIZZA_DEADLETTERS", "ACME_EVENTS",
                         "ACME_DEADLETTERS", "KV_PIZZA_USAGE", "KV_ACME_USAGE"):
                assert name in streams, name
            assert streams["PIZZA_EVENTS"].config.subjects == ["pizza.events.>"]
            assert streams["ACME_EVENTS"].config.subjects == ["acme.events.>"]
            assert await subjects(js, "PIZZA_EVENTS") == {
                "pizza.events.potter.KilnFired.v1": 4}
            assert await subjects(js, "ACME_EVENTS") == {"acme.events.potter.KilnFired.v1": 4}
            assert "PIZZA_COMMANDS" in streams and "ACME_COMMANDS" in streams
            # Each system's dead letter is in its own stream, with its own headers.
            assert await subjects(js, "PIZZA_DEADLETTERS") == {
                "pizza.deadletters.gallery.hang": 1}
            assert await subjects(js, "ACME_DEADLETTERS") == {
                "acme.deadletters.gallery.hang": 1}
            ours_dead = await js.get_last_msg("PIZZA_DEADLETTERS",
                                              "pizza.deadletters.gallery.hang")
            theirs_dead = await js.get_last_msg("ACME_DEADLETTERS",
                                                "acme.deadletters.gallery.hang")
            assert (ours_dead.headers or {}).get("Pizza-Dead-Reason") == "rejected"
            assert (theirs_dead.headers or {}).get("Acme-Dead-Reason") == "rejected"
            assert (theirs_dead.headers or {}).get("Acme-Original-Subject") == (
                "acme.events.potter.KilnFired.v1")
            # The same durable name, in each system's own stream.
            assert (await js.consumer_info("PIZZA_EVENTS", "gallery-hang")).num_pending == 0
            assert (await js.consumer_info("ACME_EVENTS", "gallery-hang")).num_pending == 0
            # Each live registry knows its own system's services.
            for bucket in ("PIZZA_USAGE", "ACME_USAGE"):
                keys = await (await js.key_value(bucket)).keys()
                assert sorted(keys) == ["gallery", "potter"], bucket
        finally:
            await nc.close()
    finally:
        await asyncio.gather(ours.stop(), theirs.stop())


async def subjects(js: nats.js.JetStreamContext, stream: str) -> dict[str, int]:
    info = await js.stream_info(stream, subjects_filter=">")
    return dict(info.state.subjects or {})
