"""The pickup counter: prepared pickup orders wait, get collected, or are withdrawn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import System, deliver, eventually, publish, running
from pizza import config
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.services import staff_rest
from pizza.services.pickup import create as pickup

PICKUP = "pizza.events.pickup."


ADDRESS_1 = "00000000-0000-4000-9000-000000000001"
ORDER_1 = "00000000-0000-4000-8000-000000000001"
ORDER_2 = "00000000-0000-4000-8000-000000000002"
ORDER_3 = "00000000-0000-4000-8000-000000000003"


def order_n(n: int) -> str:
    """The id of a test's n-th order: a UUID, as orders makes them."""
    return f"00000000-0000-4000-8000-{n:012d}"


def prepared(order_id: str, fulfilment: str = "pickup") -> OrderPreparedV1:
    return OrderPreparedV1(order_id=order_id, fulfilment=fulfilment,
                           delivery_id=ADDRESS_1 if fulfilment == "delivery" else None)


def cancelled(order_id: str) -> OrderCancelledV1:
    return OrderCancelledV1(order_id=order_id, reason="changed my mind")


def types(system: System) -> list[str]:
    return [e["metadata"]["type"] for e in system.published(PICKUP)]


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([pickup], tmp_path) as running_system:
        yield running_system


async def waiting(system: System) -> list[dict[str, Any]]:
    response = await system.http.get("/api/pickup/orders")
    assert response.status_code == 200
    return response.json()


async def collect(system: System, order_id: str) -> Any:
    return await system.http.post(f"/api/pickup/orders/{order_id}/collected")


async def test_a_prepared_pickup_order_waits_and_is_announced_once(system: System) -> None:
    env = await publish(system, prepared(ORDER_1))
    await deliver(system, env, nats_id="redelivered")
    await publish(system, prepared(ORDER_1))  # the same fact published again
    assert await waiting(system) == [{"orderId": ORDER_1, "stage": "waiting"}]
    [ready] = system.published(PICKUP)
    assert ready["metadata"]["type"] == "OrderReadyForCollection"
    assert ready["data"] == {"orderId": ORDER_1}
    assert ready["metadata"]["correlationId"] == env.metadata.correlation_id
    assert ready["metadata"]["causationId"] == env.metadata.id


async def test_a_delivery_order_is_not_ours(system: System) -> None:
    await publish(system, prepared(ORDER_1, fulfilment="delivery"))
    assert await waiting(system) == []
    assert types(system) == []
    assert (await collect(system, ORDER_1)).status_code == 404


async def test_waiting_orders_are_listed_oldest_first(system: System) -> None:
    for order_id in (ORDER_1, ORDER_2, ORDER_3):
        await publish(system, prepared(order_id))
    assert [o["orderId"] for o in await waiting(system)] == [ORDER_1, ORDER_2, ORDER_3]


async def test_collected_publishes_once_in_the_orders_story(system: System) -> None:
    env = await publish(system, prepared(ORDER_1))
    for _ in range(2):
        response = await collect(system, ORDER_1)
        assert response.status_code == 202
        assert response.json() == {"orderId": ORDER_1, "stage": "collected"}
    await system.settle()
    assert types(system) == ["OrderReadyForCollection", "OrderCollected"]
    ready, collected = system.published(PICKUP)
    assert collected["data"] == {"orderId": ORDER_1}
    assert collected["metadata"]["correlationId"] == env.metadata.correlation_id
    # The click's event follows on from the shelf's announcement, which the kitchen's
    # OrderPrepared caused: one connected story on /events.
    assert ready["metadata"]["causationId"] == env.metadata.id
    assert collected["metadata"]["causationId"] == ready["metadata"]["id"]
    assert await waiting(system) == []


async def test_unknown_order_is_not_found(system: System) -> None:
    response = await collect(system, "nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"


async def test_a_cancelled_order_is_withdrawn(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await publish(system, cancelled(ORDER_1))
    assert await waiting(system) == []
    response = await collect(system, ORDER_1)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "order-withdrawn"
    await system.settle()
    assert types(system) == ["OrderReadyForCollection"]


async def test_cancel_before_prepared_leaves_a_tombstone(system: System) -> None:
    await publish(system, cancelled(ORDER_1))
    await publish(system, prepared(ORDER_1))  # late: its own queue was slower
    assert await waiting(system) == []
    assert types(system) == []
    assert (await collect(system, ORDER_1)).status_code == 409


async def test_cancel_after_collection_changes_nothing(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await collect(system, ORDER_1)
    await publish(system, cancelled(ORDER_1))
    assert (await collect(system, ORDER_1)).status_code == 202


@pytest.fixture
def simulate() -> Iterator[Callable[..., None]]:
    def configure(**options: Any) -> None:
        config.configure(simulate=True, **options)

    yield configure
    config.reset()


async def test_the_simulated_counter_hands_every_order_over(
        tmp_path: Path, simulate: Callable[..., None]) -> None:
    simulate(drive_seconds=0)
    async with running([pickup], tmp_path) as system:
        for n in range(4):
            await publish(system, prepared(order_n(n)))
        await eventually(lambda: types(system).count("OrderCollected") == 4)
        assert await waiting(system) == []


async def test_an_order_put_out_wakes_the_counter_which_rests_until_it_is_due(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """No polling: with the safety poll an hour away, the order's commit wakes the counter,
    which then rests until it has waited drive_seconds."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 3600.0)
    simulate(drive_seconds=0.3)
    async with running([pickup], tmp_path) as system:
        await asyncio.sleep(0.5)  # the counter found nothing to do and rests
        await publish(system, prepared(ORDER_1))
        await eventually(lambda: types(system) == ["OrderReadyForCollection",
                                                   "OrderCollected"])
