"""Tracking folds each batch of events into the read model at once (one locked read and
one write of every order the batch touches): the documents must be those that folding
one event at a time gives, on SQLite and on PostgreSQL, with its ten queues writing the
same orders at the same moment, and with two tracking processes sharing one PostgreSQL
database (locks, inserts racing for a new order)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import envelope, running
from pizza import config
from pizza.contracts.delivery import OrderDeliveredV1, OrderOutForDeliveryV1
from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import (
    Money,
    OrderCancelledV1,
    OrderCompletedV1,
    OrderConfirmedV2,
    OrderLine,
)
from pizza.contracts.pickup import OrderCollectedV1, OrderReadyForCollectionV1
from pizza.eventing import Event
from pizza.eventing.envelope import Envelope
from pizza.eventing.host import Runtime
from pizza.eventing.transport.base import Outgoing
from pizza.eventing.transport.memory import MemoryTransport
from pizza.services.tracking import create as tracking

ORDERS = 24
ADDRESS = "00000000-0000-4000-9000-000000000001"


def order_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def story(n: int) -> list[Event]:
    """Delivery, pickup, or cancelled after preparing, by n."""
    oid = order_id(n)
    pickup = n % 3 == 1
    steps: list[Event] = [
        OrderConfirmedV2(
            order_id=oid, customer_id=f"c-{n % 5}", order_value=Money(amount=12.5 + n),
            fulfilment="pickup" if pickup else "delivery",
            delivery_id=None if pickup else ADDRESS,
            items=[OrderLine(menu_item_id="margherita", name="Margherita", quantity=1,
                             unit_price=12.5 + n)]),
        OrderPreparingV1(order_id=oid),
    ]
    if n % 3 == 2:
        return [*steps, OrderCancelledV1(order_id=oid, reason="the customer asked")]
    steps.append(OrderPreparedV1(order_id=oid, fulfilment="pickup" if pickup else "delivery",
                                 delivery_id=None if pickup else ADDRESS))
    steps += ([OrderReadyForCollectionV1(order_id=oid), OrderCollectedV1(order_id=oid)]
              if pickup else [OrderOutForDeliveryV1(order_id=oid, driver="Ada"),
                              OrderDeliveredV1(order_id=oid)])
    return [*steps,
            OrderCompletedV1(order_id=oid, customer_id=f"c-{n % 5}", order_value=12.5 + n,
                             fulfilment="pickup" if pickup else "delivery"),
            LoyaltyPointsAddedV1(customer_id=f"c-{n % 5}", order_id=oid, points=12 + n,
                                 balance=12 + n)]


def every_event() -> list[Envelope]:
    """Every order's story, each event stamped a second after the one before."""
    found = []
    for n in range(ORDERS):
        for i, event in enumerate(story(n)):
            env = envelope(event, f"2026-11-30T12:{n:02d}:{i:02d}.000Z")
            found.append(env)
    return found


def outgoing(env: Envelope) -> Outgoing:
    meta = env.metadata
    return Outgoing(meta.id, f"pizza.events.{meta.source}.{meta.type}.v{meta.version}",
                    env.encode())


async def documents(runtime: Runtime) -> dict[str, Any]:
    store = runtime.hosts["tracking"].service.read_models.current().store
    found = {}
    for n in range(ORDERS):
        view = await store.get(order_id(n))
        found[order_id(n)] = None if view is None else view.to_json()
    return found


async def settle(runtimes: Sequence[Runtime], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline, quiet = loop.time() + timeout, 0
    while quiet < 2:
        if loop.time() > deadline:
            raise TimeoutError("tracking did not settle")
        busy = 0
        for runtime in runtimes:
            for consumer in runtime.hosts["tracking"].consumers:
                if consumer.queue is not None:
                    waiting, unacked = await consumer.queue.pending()
                    busy += waiting + unacked
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def sql_store() -> Any:
    config.reset()
    config.configure(redis_url=None)
    yield
    config.reset()


@pytest.fixture
async def one_at_a_time(tmp_path: Path) -> dict[str, Any]:
    """The documents folding each event alone gives (each handled before the next is
    published), in any order of arrival: the reference."""
    events = every_event()
    random.Random(7).shuffle(events)
    async with running([tracking], tmp_path / "reference") as system:
        for env in events:
            await system.transport.publish([outgoing(env)])
            await system.settle()
        return await documents(system.runtime)


async def start(storage: dict[str, str | None], name: str) -> tuple[Runtime, MemoryTransport]:
    """A tracking process of its own (its own bus) on the test's storage."""
    transport = MemoryTransport()
    options: dict[str, Any] = {"relay_interval": 0.05}
    if storage["database_url"] is not None:
        options.update(database_url=storage["database_url"], schema=storage["schema"])
    runtime = Runtime([tracking(config.settings())], transport=transport, **options)
    await runtime.start()
    return runtime, transport


@pytest.fixture
async def stopping() -> AsyncIterator[list[Runtime]]:
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        await runtime.stop()


async def test_a_batch_folds_to_the_documents_of_one_event_at_a_time(
        storage: dict[str, str | None], one_at_a_time: dict[str, Any],
        stopping: list[Runtime]) -> None:
    """Every event published at once, shuffled: each of tracking's ten queues takes a
    batch, and they write the same orders at the same moment."""
    runtime, transport = await start(storage, "one")
    stopping.append(runtime)
    events = every_event()
    random.Random(11).shuffle(events)
    await transport.publish([outgoing(env) for env in events])
    await settle([runtime])

    assert await documents(runtime) == one_at_a_time
    handled = sum(c.stats.handled for c in runtime.hosts["tracking"].consumers)
    assert handled == len(events)


async def test_two_tracking_processes_sharing_postgresql_fold_the_same_documents(
        storage: dict[str, str | None], one_at_a_time: dict[str, Any],
        stopping: list[Runtime]) -> None:
    """Two processes on one PostgreSQL database, each given half of every order's
    events at once: they lock the same rows and race to insert the same new orders."""
    if storage["database_url"] is None:
        pytest.skip("one SQLite file has one process (storage.Database refuses a second)")
    first, first_bus = await start(storage, "first")
    stopping.append(first)
    second, second_bus = await start(storage, "second")
    stopping.append(second)
    events = every_event()
    random.Random(13).shuffle(events)
    await asyncio.gather(first_bus.publish([outgoing(env) for env in events[0::2]]),
                         second_bus.publish([outgoing(env) for env in events[1::2]]))
    await settle([first, second])

    assert await documents(first) == one_at_a_time
    assert await documents(second) == one_at_a_time
