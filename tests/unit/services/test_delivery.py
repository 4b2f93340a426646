"""Delivery: addresses, jobs for prepared delivery orders, drivers, cancellations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from harness import System, deliver, eventually, publish, running
from pizza import config
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.services import staff_rest
from pizza.services.delivery import create as delivery
from pizza.services.delivery.jobs import open_job
from pizza.services.delivery.simulation import DRIVERS
from pizza.services.delivery.tables import addresses

DELIVERY = "pizza.events.delivery."
HOME = {"customerId": "c-1", "line1": "1 Basil Street", "line2": "Flat 2",
        "city": "London", "postcode": "sw1a1aa"}


ADDRESS_1 = "00000000-0000-4000-9000-000000000001"
ADDRESS_999 = "00000000-0000-4000-9000-000000000999"
ORDER_1 = "00000000-0000-4000-8000-000000000001"
ORDER_2 = "00000000-0000-4000-8000-000000000002"
ORDER_AA = "00000000-0000-4000-8000-0000000000aa"


def order_n(n: int) -> str:
    """The id of a test's n-th order: a UUID, as orders makes them."""
    return f"00000000-0000-4000-8000-{n:012d}"


def prepared(order_id: str, delivery_id: str | None = ADDRESS_1,
             fulfilment: str = "delivery") -> OrderPreparedV1:
    return OrderPreparedV1(order_id=order_id, fulfilment=fulfilment, delivery_id=delivery_id)


def cancelled(order_id: str) -> OrderCancelledV1:
    return OrderCancelledV1(order_id=order_id, reason="changed my mind")


def types(system: System) -> list[str]:
    return [e["metadata"]["type"] for e in system.published(DELIVERY)]


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([delivery], tmp_path) as running_system:
        yield running_system


async def register(system: System, body: dict[str, Any] = HOME) -> str:
    response = await system.http.post("/api/delivery-addresses", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["deliveryId"])


async def jobs(system: System) -> list[dict[str, Any]]:
    response = await system.http.get("/api/delivery/jobs")
    assert response.status_code == 200
    return response.json()


async def send_out(system: System, order_id: str, driver: str = "Asha") -> Any:
    return await system.http.post(f"/api/delivery/jobs/{order_id}/out-for-delivery",
                                  json={"driver": driver})


async def stored_addresses(system: System) -> int:
    async with system.service("delivery").read() as conn:
        return int((await conn.execute(select(func.count()).select_from(addresses)))
                   .scalar_one())


# -- addresses ---------------------------------------------------------------------------

async def test_registering_an_address_announces_its_id(system: System) -> None:
    response = await system.http.post("/api/delivery-addresses", json=HOME)
    assert response.status_code == 201
    assert list(response.json()) == ["deliveryId"]
    delivery_id = response.json()["deliveryId"]
    await system.settle()
    [registered] = system.published(DELIVERY)
    assert registered["metadata"]["type"] == "DeliveryAddressRegistered"
    assert registered["data"] == {"deliveryId": delivery_id, "customerId": "c-1"}
    assert await register(system) != delivery_id  # every registration gets its own id


@pytest.mark.parametrize("change", [
    {"city": None},
    {"line1": "   "},
    {"customerId": ""},
    {"postcode": "not a postcode"},
    {"postcode": "12345"},
    {"line1": "x" * 201},
    {"line2": "x" * 201},
])
async def test_bad_address_is_refused_and_nothing_happens(system: System,
                                                          change: dict[str, Any]) -> None:
    body = {k: v for k, v in {**HOME, **change}.items() if v is not None}
    response = await system.http.post("/api/delivery-addresses", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid-request"
    await system.settle()
    assert types(system) == []
    assert await stored_addresses(system) == 0


# -- jobs ------------------------------------------------------------------------------

async def test_a_prepared_delivery_order_becomes_a_job_with_its_address(
        system: System) -> None:
    delivery_id = await register(system, {**HOME, "line2": None, "postcode": " se1 7pb "})
    await publish(system, prepared(ORDER_1, delivery_id))
    assert await jobs(system) == [{
        "orderId": ORDER_1, "stage": "awaiting", "driver": None,
        "address": {"line1": "1 Basil Street", "line2": None, "city": "London",
                    "postcode": "SE1 7PB"},
    }]


async def test_each_click_names_the_message_it_follows_on_from(system: System) -> None:
    delivery_id = await register(system, HOME)
    env = await publish(system, prepared(ORDER_1, delivery_id))
    assert (await send_out(system, ORDER_1)).status_code == 202
    assert (await system.http.post(
        f"/api/delivery/jobs/{ORDER_1}/delivered")).status_code == 202
    await system.settle()
    out, delivered = (e["metadata"] for e in system.published(DELIVERY)
                      if e["metadata"]["type"] != "DeliveryAddressRegistered")
    assert (out["type"], delivered["type"]) == ("OrderOutForDelivery", "OrderDelivered")
    assert out["causationId"] == env.metadata.id
    assert delivered["causationId"] == out["id"]


async def test_a_pickup_order_is_not_delivered(system: System) -> None:
    await publish(system, prepared(ORDER_1, None, fulfilment="pickup"))
    assert await jobs(system) == []
    assert (await send_out(system, ORDER_1)).status_code == 404


async def test_an_unknown_delivery_id_still_opens_the_job(system: System) -> None:
    await publish(system, prepared(ORDER_1, ADDRESS_999))
    [job] = await jobs(system)
    assert (job["orderId"], job["address"]) == (ORDER_1, None)


async def test_redelivered_prepared_opens_one_job(system: System) -> None:
    env = await publish(system, prepared(ORDER_1))
    await deliver(system, env, nats_id="redelivered")
    await publish(system, prepared(ORDER_1))
    assert [j["orderId"] for j in await jobs(system)] == [ORDER_1]


async def test_out_for_delivery_publishes_once_in_the_orders_story(system: System) -> None:
    env = await publish(system, prepared(ORDER_1))
    first = await send_out(system, ORDER_1, "Asha")
    again = await send_out(system, ORDER_1, "Asha")
    assert (first.status_code, again.status_code) == (202, 202)
    await system.settle()
    [out] = system.published(DELIVERY)
    assert out["metadata"]["type"] == "OrderOutForDelivery"
    assert out["data"] == {"orderId": ORDER_1, "driver": "Asha"}
    assert out["metadata"]["correlationId"] == env.metadata.correlation_id
    assert [(j["stage"], j["driver"]) for j in await jobs(system)] == [("out", "Asha")]


async def test_another_driver_cannot_take_a_job_already_out(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await send_out(system, ORDER_1, "Asha")
    response = await send_out(system, ORDER_1, "Bertie")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "wrong-stage"


@pytest.mark.parametrize("body", [{}, {"driver": ""}, {"driver": "x" * 101}])
async def test_out_for_delivery_needs_a_driver(system: System, body: dict[str, Any]) -> None:
    await publish(system, prepared(ORDER_1))
    response = await system.http.post(f"/api/delivery/jobs/{ORDER_1}/out-for-delivery", json=body)
    assert response.status_code == 422
    await system.settle()
    assert types(system) == []
    assert (await jobs(system))[0]["stage"] == "awaiting"


async def test_delivered_needs_the_job_out_first(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    response = await system.http.post(f"/api/delivery/jobs/{ORDER_1}/delivered")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "wrong-stage"
    await system.settle()
    assert types(system) == []


async def test_delivered_publishes_once_and_leaves_the_list(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await publish(system, prepared(ORDER_2))
    await send_out(system, ORDER_1)
    for _ in range(2):
        response = await system.http.post(f"/api/delivery/jobs/{ORDER_1}/delivered")
        assert response.status_code == 202
    await system.settle()
    assert types(system) == ["OrderOutForDelivery", "OrderDelivered"]
    assert system.published(DELIVERY)[1]["data"] == {"orderId": ORDER_1}
    assert [j["orderId"] for j in await jobs(system)] == [ORDER_2]
    assert (await send_out(system, ORDER_1)).status_code == 409


@pytest.mark.parametrize("path", ["out-for-delivery", "delivered"])
async def test_unknown_job_is_not_found(system: System, path: str) -> None:
    response = await system.http.post(f"/api/delivery/jobs/nope/{path}",
                                      json={"driver": "Asha"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"


async def test_a_cancelled_job_is_withdrawn(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await publish(system, cancelled(ORDER_1))
    assert await jobs(system) == []
    response = await send_out(system, ORDER_1)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job-withdrawn"
    await system.settle()
    assert types(system) == []


async def test_cancel_before_prepared_leaves_a_tombstone(system: System) -> None:
    await publish(system, cancelled(ORDER_1))
    await publish(system, prepared(ORDER_1))  # late: its own queue was slower
    assert await jobs(system) == []
    assert (await send_out(system, ORDER_1)).json()["error"]["code"] == "job-withdrawn"


async def test_a_cancel_withdraws_the_job_even_once_out(system: System) -> None:
    # Orders accepted the cancel before it heard of OrderPrepared (it raced the kitchen):
    # orders is the authority, so the driver brings the order back.
    await publish(system, prepared(ORDER_1))
    await send_out(system, ORDER_1)
    await publish(system, cancelled(ORDER_1))

    assert await jobs(system) == []
    response = await system.http.post(f"/api/delivery/jobs/{ORDER_1}/delivered")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job-withdrawn"
    await system.settle()
    assert types(system) == ["OrderOutForDelivery"]


async def test_cancel_after_delivery_changes_nothing(system: System) -> None:
    await publish(system, prepared(ORDER_1))
    await send_out(system, ORDER_1)
    assert (await system.http.post(f"/api/delivery/jobs/{ORDER_1}/delivered")).status_code == 202
    await publish(system, cancelled(ORDER_1))
    assert (await system.http.post(f"/api/delivery/jobs/{ORDER_1}/delivered")).status_code == 202


# -- simulation ------------------------------------------------------------------------

@pytest.fixture
def simulate() -> Iterator[Callable[..., None]]:
    def configure(**options: Any) -> None:
        config.configure(simulate=True, **options)

    yield configure
    config.reset()


async def test_simulated_drivers_deliver_every_job(tmp_path: Path,
                                                   simulate: Callable[..., None]) -> None:
    simulate(drive_seconds=0)
    async with running([delivery], tmp_path) as system:
        for n in range(4):
            await publish(system, prepared(order_n(n)))
        await publish(system, prepared(ORDER_AA, None, fulfilment="pickup"))
        await eventually(lambda: types(system).count("OrderDelivered") == 4)
        await system.settle()
        events = system.published(DELIVERY)
        outs = [e["data"] for e in events if e["metadata"]["type"] == "OrderOutForDelivery"]
        assert sorted(o["orderId"] for o in outs) == [order_n(n) for n in range(4)]
        assert {o["driver"] for o in outs} <= set(DRIVERS)
        assert await jobs(system) == []


async def test_simulated_drivers_take_drive_seconds(tmp_path: Path,
                                                    simulate: Callable[..., None]) -> None:
    simulate(drive_seconds=0.5)
    async with running([delivery], tmp_path) as system:
        # Timed from before the job exists (it leaves later): the moment we happen to
        # see OrderOutForDelivery on the bus may be well after it left, on a busy machine.
        before = asyncio.get_running_loop().time()
        await publish(system, prepared(ORDER_1))
        await eventually(lambda: types(system) == ["OrderOutForDelivery", "OrderDelivered"])
        assert asyncio.get_running_loop().time() - before >= 0.45


async def test_a_driver_taking_a_job_wakes_the_drivers_who_deliver_it(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """A click that sends out a job the drivers had not seen wakes them: it is delivered
    once it has been out drive_seconds, not at their next safety poll (an hour away)."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 3600.0)
    simulate(drive_seconds=0.2)
    async with running([delivery], tmp_path) as system:
        await asyncio.sleep(0.3)  # the drivers found nothing to do and rest
        async with system.service("delivery").unit_of_work() as ctx:
            await open_job(ctx, prepared(ORDER_1))  # written without a wake-up
        assert (await send_out(system, ORDER_1)).status_code == 202
        await eventually(lambda: types(system) == ["OrderOutForDelivery", "OrderDelivered"])


async def test_a_new_job_wakes_the_drivers_who_rest_until_it_is_delivered(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """No polling: with the safety poll an hour away, the job's commit wakes the drivers,
    who then rest until it has been out drive_seconds (a pickup order is no job)."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 3600.0)
    simulate(drive_seconds=0.3)
    async with running([delivery], tmp_path) as system:
        await asyncio.sleep(0.5)  # the drivers found nothing to do and rest
        await publish(system, prepared(ORDER_AA, None, fulfilment="pickup"))
        await publish(system, prepared(ORDER_1))
        await eventually(lambda: types(system) == ["OrderOutForDelivery", "OrderDelivered"])
