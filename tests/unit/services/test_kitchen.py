"""The kitchen: tickets from confirmed orders, the two buttons, cancellations, simulation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import System, deliver, eventually, publish, running
from pizza import config
from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1, OrderLine
from pizza.services import staff_rest
from pizza.services.kitchen import create as kitchen
from pizza.services.kitchen.tickets import open_ticket

KITCHEN = "pizza.events.kitchen."


ADDRESS_1 = "00000000-0000-4000-9000-000000000001"
ORDER_1 = "00000000-0000-4000-8000-000000000001"
ORDER_2 = "00000000-0000-4000-8000-000000000002"
ORDER_3 = "00000000-0000-4000-8000-000000000003"


def order_n(n: int) -> str:
    """The id of a test's n-th order: a UUID, as orders makes them."""
    return f"00000000-0000-4000-8000-{n:012d}"


def confirmed(order_id: str = ORDER_1, fulfilment: str = "delivery") -> OrderConfirmedV1:
    return OrderConfirmedV1(
        order_id=order_id, customer_id="c-1", order_value=21.5, fulfilment=fulfilment,
        delivery_id=ADDRESS_1 if fulfilment == "delivery" else None,
        items=[OrderLine(menu_item_id="margherita", name="Margherita", quantity=2,
                         unit_price=9.5),
               OrderLine(menu_item_id="garlic-bread", name="Garlic bread", quantity=1,
                         unit_price=2.5)])


def types(system: System) -> list[str]:
    return [e["metadata"]["type"] for e in system.published(KITCHEN)]


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([kitchen], tmp_path) as running_system:
        yield running_system


async def tickets(system: System) -> list[dict[str, Any]]:
    response = await system.http.get("/api/kitchen/tickets")
    assert response.status_code == 200
    return response.json()


async def test_a_confirmed_order_becomes_a_ticket(system: System) -> None:
    await publish(system, confirmed(ORDER_1))
    [ticket] = await tickets(system)
    assert ticket["createdAt"].endswith("Z")
    del ticket["createdAt"]
    assert ticket == {
        "orderId": ORDER_1, "stage": "new", "fulfilment": "delivery",
        "items": [{"menuItemId": "margherita", "name": "Margherita", "quantity": 2},
                  {"menuItemId": "garlic-bread", "name": "Garlic bread", "quantity": 1}],
    }
    assert types(system) == []


async def test_redelivered_confirmation_opens_one_ticket(system: System) -> None:
    env = await publish(system, confirmed(ORDER_1))
    await deliver(system, env, nats_id="redelivered")  # same message, past the broker
    await publish(system, confirmed(ORDER_1))  # the same fact published again
    assert [t["orderId"] for t in await tickets(system)] == [ORDER_1]


async def test_tickets_are_listed_newest_last(system: System) -> None:
    for order_id in (ORDER_1, ORDER_2, ORDER_3):
        await publish(system, confirmed(order_id))
    assert [t["orderId"] for t in await tickets(system)] == [ORDER_1, ORDER_2, ORDER_3]


async def test_start_publishes_preparing_once_in_the_orders_story(system: System) -> None:
    env = await publish(system, confirmed(ORDER_1))
    first = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
    again = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
    await system.settle()
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json() == {"orderId": ORDER_1, "stage": "preparing"}
    [preparing] = system.published(KITCHEN)
    assert preparing["metadata"]["type"] == "OrderPreparing"
    assert preparing["data"] == {"orderId": ORDER_1}
    assert preparing["metadata"]["correlationId"] == env.metadata.correlation_id
    assert (await tickets(system))[0]["stage"] == "preparing"


async def test_each_click_names_the_message_it_follows_on_from(system: System) -> None:
    """A click has no message being handled; its event still names its cause, so the
    order's story on /events reads OrderConfirmed -> OrderPreparing -> OrderPrepared."""
    env = await publish(system, confirmed(ORDER_1))
    assert (await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")).status_code == 202
    assert (await system.http.post(
        f"/api/kitchen/tickets/{ORDER_1}/prepared")).status_code == 202
    await system.settle()
    preparing, prepared = (e["metadata"] for e in system.published(KITCHEN))
    assert (preparing["type"], prepared["type"]) == ("OrderPreparing", "OrderPrepared")
    assert preparing["causationId"] == env.metadata.id
    assert prepared["causationId"] == preparing["id"]


async def test_prepared_from_new_says_preparing_first(system: System) -> None:
    await publish(system, confirmed(ORDER_1))
    response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/prepared")
    assert response.status_code == 202
    await system.settle()
    events = system.published(KITCHEN)
    assert [e["metadata"]["type"] for e in events] == ["OrderPreparing", "OrderPrepared"]
    assert events[1]["data"] == {"orderId": ORDER_1, "fulfilment": "delivery",
                                 "deliveryId": ADDRESS_1}
    assert (await tickets(system))[0]["stage"] == "prepared"


async def test_prepared_twice_publishes_once(system: System) -> None:
    await publish(system, confirmed(ORDER_1, fulfilment="pickup"))
    assert (await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")).status_code == 202
    for _ in range(2):
        response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/prepared")
        assert response.status_code == 202
    await system.settle()
    assert types(system) == ["OrderPreparing", "OrderPrepared"]
    assert system.published(KITCHEN)[1]["data"] == {
        "orderId": ORDER_1, "fulfilment": "pickup", "deliveryId": None}


async def test_start_after_prepared_is_wrong_stage(system: System) -> None:
    await publish(system, confirmed(ORDER_1))
    await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/prepared")
    response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "wrong-stage"
    await system.settle()
    assert types(system) == ["OrderPreparing", "OrderPrepared"]


@pytest.mark.parametrize("button", ["start", "prepared"])
async def test_unknown_ticket_is_not_found(system: System, button: str) -> None:
    response = await system.http.post(f"/api/kitchen/tickets/nope/{button}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"
    await system.settle()
    assert types(system) == []


async def test_cancelled_ticket_is_withdrawn(system: System) -> None:
    await publish(system, confirmed(ORDER_1))
    await publish(system, confirmed(ORDER_2))
    await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
    await publish(system, OrderCancelledV1(order_id=ORDER_1, reason="changed my mind"))
    assert [t["orderId"] for t in await tickets(system)] == [ORDER_2]
    for button in ("start", "prepared"):
        response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/{button}")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "ticket-withdrawn"
    await system.settle()
    assert types(system) == ["OrderPreparing"]


async def test_cancel_before_confirm_leaves_a_tombstone(system: System) -> None:
    await publish(system, OrderCancelledV1(order_id=ORDER_1, reason="changed my mind"))
    await publish(system, confirmed(ORDER_1))  # late: its own queue was slower
    assert await tickets(system) == []
    response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ticket-withdrawn"


async def test_a_cancel_racing_the_kitchen_withdraws_even_a_prepared_ticket(
        system: System) -> None:
    # Orders accepted the cancel before it heard of OrderPrepared: orders is the
    # authority, so the kitchen drops the order it had just finished.
    await publish(system, confirmed(ORDER_1))
    assert (await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/prepared")).status_code == 202
    await publish(system, OrderCancelledV1(order_id=ORDER_1, reason="cancelled by customer"))

    assert await tickets(system) == []
    again = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/prepared")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ticket-withdrawn"
    await system.settle()
    assert types(system) == ["OrderPreparing", "OrderPrepared"]


@pytest.fixture
def simulate() -> Iterator[Callable[..., None]]:
    def configure(**options: Any) -> None:
        config.configure(simulate=True, **options)

    yield configure
    config.reset()


async def test_simulated_staff_cook_every_ticket(tmp_path: Path,
                                                 simulate: Callable[..., None]) -> None:
    simulate(cook_seconds=0)
    async with running([kitchen], tmp_path) as system:
        for n in range(5):
            await publish(system, confirmed(order_n(n)))
        await eventually(lambda: types(system).count("OrderPrepared") == 5)
        await system.settle()
        assert types(system).count("OrderPreparing") == 5
        assert {t["stage"] for t in await tickets(system)} == {"prepared"}


async def test_simulated_staff_take_cook_seconds(tmp_path: Path,
                                                 simulate: Callable[..., None]) -> None:
    simulate(cook_seconds=0.5)
    async with running([kitchen], tmp_path) as system:
        # Timed from before the ticket exists (it starts later): the moment we happen to
        # see OrderPreparing on the bus may be well after it started, on a busy machine.
        before = asyncio.get_running_loop().time()
        await publish(system, confirmed(ORDER_1))
        await eventually(lambda: types(system) == ["OrderPreparing", "OrderPrepared"])
        assert asyncio.get_running_loop().time() - before >= 0.45


async def test_a_new_ticket_wakes_the_staff_who_rest_until_it_is_cooked(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """No polling: with the safety poll an hour away, the ticket's commit wakes the staff,
    who then rest until the ticket has cooked cook_seconds."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 3600.0)
    simulate(cook_seconds=0.3)
    async with running([kitchen], tmp_path) as system:
        await asyncio.sleep(0.5)  # the staff found nothing to do and rest
        await publish(system, confirmed(ORDER_1))
        await eventually(lambda: types(system) == ["OrderPreparing", "OrderPrepared"])
        for n in range(2, 5):  # and again, each woken by its own ticket
            await publish(system, confirmed(order_n(n)))
        await eventually(lambda: types(system).count("OrderPrepared") == 4)


async def test_a_cook_starting_a_ticket_wakes_the_staff_who_finish_it(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """A click that starts a ticket the staff had not seen wakes them: they box it once
    it has cooked, not at their next safety poll (an hour away here)."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 3600.0)
    simulate(cook_seconds=0.2)
    async with running([kitchen], tmp_path) as system:
        await asyncio.sleep(0.3)  # the staff found nothing to do and rest
        async with system.service("kitchen").unit_of_work() as ctx:
            await open_ticket(ctx, confirmed(ORDER_1))  # written without a wake-up
        response = await system.http.post(f"/api/kitchen/tickets/{ORDER_1}/start")
        assert response.status_code == 202
        await eventually(lambda: types(system) == ["OrderPreparing", "OrderPrepared"])


async def test_a_ticket_no_wake_up_announced_is_found_by_the_safety_poll(
        tmp_path: Path, simulate: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """A ticket written without waking the staff (by another process, before a restart)
    is still cooked: the staff look again after the safety poll."""
    monkeypatch.setattr(staff_rest, "SAFETY_POLL_SECONDS", 0.2)
    simulate(cook_seconds=0)
    async with running([kitchen], tmp_path) as system:
        await asyncio.sleep(0.3)
        async with system.service("kitchen").unit_of_work() as ctx:
            await open_ticket(ctx, confirmed(ORDER_1))
        await eventually(lambda: types(system) == ["OrderPreparing", "OrderPrepared"])
