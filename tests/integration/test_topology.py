"""Provisioning: a consumer that starts after its producer misses none of the producer's
first messages, and a producer asking who reads a version hears every service, once the
system was provisioned (`pizza up` does it before any service starts; `pizza
broker-provision` for a deployment of your own). Each test runs its own nats-server."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

import harness
from pizza.eventing import Context, Event, Service, ServiceHost, event, topology, usage
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport

eventually = functools.partial(harness.eventually, timeout=15.0)
PIZZA = str(Path(sys.executable).parent / "pizza")


@event("OvenLit", version=1, source="bakery")
class OvenLitV1(Event):
    number: int


def counting_service() -> tuple[Service, Table]:
    metadata = MetaData()
    seen = Table("seen", metadata, Column("number", Integer, primary_key=True))
    service = Service("counter-of-ovens", tables=metadata)

    @service.handles(OvenLitV1)
    async def count(event: OvenLitV1, ctx: Context) -> None:
        await ctx.db.execute(insert(seen).values(number=event.number))

    return service, seen


@pytest.fixture
async def transport(nats_server: EmbeddedNats, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[NatsTransport]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    connected = NatsTransport(nats_server.url)
    await connected.start()
    yield connected
    await connected.close()


async def publish(transport: NatsTransport, numbers: range) -> None:
    import nats

    nc = await nats.connect(transport.url)
    try:
        js = nc.jetstream()
        for number in numbers:
            env = Envelope(Metadata(type="OvenLit", version=1, source="bakery"),
                           {"number": number})
            await js.publish(OvenLitV1.info.subject, env.encode(),
                             headers={"Nats-Msg-Id": env.metadata.id})
    finally:
        await nc.close()


async def numbers_seen(host: ServiceHost, table: Table) -> list[int]:
    async with host.db.engine.connect() as conn:
        return sorted(row[0] for row in await conn.execute(select(table.c.number)))


@pytest.mark.parametrize("provisioned", [True, False])
async def test_a_consumer_started_after_its_producer_gets_the_first_messages_if_provisioned(
        transport: NatsTransport, provisioned: bool) -> None:
    service, seen = counting_service()
    if provisioned:
        await topology.provision([service], lambda _service: transport)
    await publish(transport, range(1, 4))  # the producer is faster than the consumer
    host = ServiceHost(service, transport, relay_interval=0.1)
    await host.start()
    try:
        await publish(transport, range(4, 6))
        await eventually(lambda: _has(numbers_seen(host, seen), 4, 5), what="the later ones")
        # Unprovisioned, a queue created now begins now: the first three are never seen.
        expected = [1, 2, 3, 4, 5] if provisioned else [4, 5]
        await eventually(lambda: _is(numbers_seen(host, seen), expected), what=str(expected))
    finally:
        await host.stop()


async def test_provisioning_tells_producers_who_reads_each_version(
        transport: NatsTransport) -> None:
    service, _ = counting_service()
    await topology.provision([service], lambda _service: transport)
    readers = await usage.consumers_of(transport, "OvenLit", 1)
    assert readers == {1: ["counter-of-ovens"]}


async def test_pizza_broker_provision_creates_every_services_queues(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    from pizza.app import load

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    env.update(PIZZA_HOME=str(tmp_path), PIZZA_NATS_URL=nats_server.url)
    done = await asyncio.to_thread(subprocess.run, [PIZZA, "broker-provision"], env=env,
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for service in load():
            for subscription in service.subscriptions.values():
                spec = topology.queue_spec(service.name, subscription)
                info = await js.consumer_info(spec.stream, spec.name)
                assert info.config.durable_name == spec.name
    finally:
        await nc.close()


def test_pizza_broker_provision_without_a_broker_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    env["PIZZA_HOME"] = str(tmp_path)
    done = subprocess.run([PIZZA, "broker-provision"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "PIZZA_NATS_URL" in done.stdout + done.stderr


async def _is(value: object, expected: list[int]) -> bool:
    return await value == expected  # type: ignore[misc]


async def _has(value: object, *numbers: int) -> bool:
    return set(numbers) <= set(await value)  # type: ignore[misc]
