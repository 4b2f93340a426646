"""Evolving a system: who consumes what, versions side by side, and replaying history."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, delete, func, insert, select

from harness import running
from pizza import config
from pizza.contracts.orders import OrderConfirmedV1, OrderConfirmedV2
from pizza.eventing import Context, Event, Service, ServiceHost, event, usage
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport
from pizza.services import orders


@event("PageViewed", version=1, source="history")
class PageViewedV1(Event):
    page: int


async def test_services_declare_what_they_consume_in_the_broker(
        nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    reader = Service("reporting")

    @reader.handles(OrderConfirmedV1)
    async def count(_event: OrderConfirmedV1, _ctx: Context) -> None: ...

    transport = NatsTransport(nats_server.url)
    await transport.start()
    host = ServiceHost(reader, transport)
    await host.start()
    await host.stop()
    try:
        # Another process, on another machine, asks the broker: stopped is not gone.
        other = NatsTransport(nats_server.url)
        await other.start()
        assert await usage.consumers_of(other, "OrderConfirmed") == {1: ["reporting"]}
        await usage.forget(other, "reporting")
        assert await usage.consumers_of(other, "OrderConfirmed") == {}
        await other.close()
    finally:
        await transport.close()


def confirmed_versions(system: Any) -> list[int]:
    return [e["metadata"]["version"]
            for e in system.published("pizza.events.orders.OrderConfirmed.")]


async def place_pickup(system: Any) -> None:
    answer = await system.http.post("/api/orders", json={
        "customerId": "c-1", "email": "c-1@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "margherita", "quantity": 1}]})
    assert answer.status_code == 202, answer.text


async def test_v1_is_published_beside_v2_only_while_someone_reads_v1(
        tmp_path: Path) -> None:
    config.configure(order_confirmed_v1="auto")
    legacy = Service("legacy-reporting")

    @legacy.handles(OrderConfirmedV1)
    async def report(_event: OrderConfirmedV1, _ctx: Context) -> None: ...

    try:
        async with running([orders.create, legacy], tmp_path) as system:
            view = system.runtime.hosts["orders"].usage_view()
            await view.refresh()
            await place_pickup(system)
            await system.settle()
            assert sorted(confirmed_versions(system)) == [1, 2]

            await usage.forget(system.transport, "legacy-reporting")  # it moved to v2
            await view.refresh()
            await place_pickup(system)
            await system.settle()
            assert sorted(confirmed_versions(system)) == [1, 2, 2], "v2 alone now"

        # "always": v1 goes out though nobody reads it (orders made with that setting).
        always = dataclasses.replace(config.settings(), order_confirmed_v1="always")
        async with running([orders.create(always)], tmp_path / "always") as system:
            await place_pickup(system)
            await system.settle()
            assert sorted(confirmed_versions(system)) == [1, 2]
    finally:
        config.reset()


def page_counter(name: str, start: str = "new") -> tuple[Service, Table]:
    metadata = MetaData()
    views = Table("views", metadata, Column("id", Integer, primary_key=True),
                  Column("page", Integer))
    service = Service(name, tables=metadata)

    @service.handles(PageViewedV1, start=start)  # type: ignore[arg-type]
    async def count(event: PageViewedV1, ctx: Context) -> None:
        await ctx.db.execute(insert(views).values(page=event.page))

    async def forget_views(host: ServiceHost) -> None:
        async with host.db.begin() as conn:
            await conn.execute(delete(views))

    service.on_replay.append(forget_views)
    return service, views


async def pages(host: ServiceHost, views: Table) -> list[int]:
    async with host.db.engine.connect() as conn:
        return [row[0] for row in await conn.execute(select(views.c.page).order_by(views.c.id))]


async def wait_for(host: ServiceHost, views: Table, count: int) -> list[int]:
    for _ in range(200):
        seen = await pages(host, views)
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {await pages(host, views)}")


async def test_a_consumer_added_later_builds_its_state_from_history_and_replays_it(
        nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    transport = NatsTransport(nats_server.url)
    await transport.start()
    producer = ServiceHost(Service("history"), transport, relay_interval=0.05)
    await producer.start()
    hosts = [producer]
    try:
        async with producer.unit_of_work() as ctx:
            for page in range(5):
                ctx.publish(PageViewedV1(page=page))
        await asyncio.sleep(0.3)

        late, late_views = page_counter(f"late-{uuid.uuid4().hex[:6]}", start="all")
        fresh, fresh_views = page_counter(f"fresh-{uuid.uuid4().hex[:6]}")
        late_host, fresh_host = ServiceHost(late, transport), ServiceHost(fresh, transport)
        for host in (late_host, fresh_host):
            await host.start()
            hosts.append(host)
        assert await wait_for(late_host, late_views, 5) == [0, 1, 2, 3, 4]

        async with producer.unit_of_work() as ctx:
            ctx.publish(PageViewedV1(page=5))
        assert await wait_for(fresh_host, fresh_views, 1) == [5], "new queues start now"
        live = await wait_for(late_host, late_views, 6)

        await late_host.replay()
        await asyncio.sleep(0.5)
        assert await wait_for(late_host, late_views, 6) == live
        await fresh_host.replay()
        assert await wait_for(fresh_host, fresh_views, 6) == [0, 1, 2, 3, 4, 5], (
            "a replay reads the whole history, whatever the queue's start")
        async with fresh_host.db.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(fresh_views)) == 6
    finally:
        for host in reversed(hosts):
            await host.stop()
        await transport.close()


def test_usage_declaration_round_trips() -> None:
    service = Service("x")
    service.declare_publishes(OrderConfirmedV2)
    declared = usage.declaration(service)
    assert usage.Declaration.from_json(declared.to_json()) == declared
    assert orjson.loads(declared.to_json())["produces"] == [["OrderConfirmed", 2]]
