"""Two systems in one interpreter: a service is made by its package's factory from the
settings it is given, so two sets of services made from two Settings share nothing. Each
app answers from the host it runs, and each service does what its own settings say.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness import System, eventually, publish, running
from pizza import config
from pizza.contracts.orders import OrderConfirmedV1, OrderLine
from pizza.eventing import personal
from pizza.services import kitchen, orders

SEND_EMAIL = "pizza.commands.notifications.SendEmail.v1"
ORDER_A = "00000000-0000-4000-8000-00000000000a"
ORDER_B = "00000000-0000-4000-8000-00000000000b"


def confirmed(order_id: str) -> OrderConfirmedV1:
    return OrderConfirmedV1(
        order_id=order_id, customer_id="c-1", order_value=9.5, fulfilment="pickup",
        delivery_id=None, items=[OrderLine(menu_item_id="margherita", name="Margherita",
                                           quantity=1, unit_price=9.5)])


async def tickets(system: System) -> dict[str, str]:
    response = await system.http.get("/api/kitchen/tickets")
    assert response.status_code == 200, response.text
    return {ticket["orderId"]: ticket["stage"] for ticket in response.json()}


async def test_two_kitchens_made_from_two_settings_keep_to_their_own(
        tmp_path: Path) -> None:
    base = config.Settings()
    simulating = kitchen.create(dataclasses.replace(base, simulate=True, cook_seconds=0))
    staffed = kitchen.create(dataclasses.replace(base, simulate=False))
    assert simulating is not staffed

    async with running([simulating], tmp_path / "a") as a, \
            running([staffed], tmp_path / "b") as b:
        await publish(a, confirmed(ORDER_A))
        await publish(b, confirmed(ORDER_B))

        # Each app answers from its own kitchen, and only the simulating one cooks.
        await eventually(lambda: _stage_is(a, ORDER_A, "prepared"), what="A cooked")
        assert await tickets(b) == {ORDER_B: "new"}
        assert await tickets(a) == {ORDER_A: "prepared"}
        assert [e["metadata"]["type"] for e in a.published("pizza.events.kitchen.")] == [
            "OrderPreparing", "OrderPrepared"]
        assert b.published("pizza.events.kitchen.") == []

        # A person's click reaches the host of the app it was sent to, not the other's.
        started = await b.http.post(f"/api/kitchen/tickets/{ORDER_B}/start")
        assert started.status_code == 202
        missing = await a.http.post(f"/api/kitchen/tickets/{ORDER_B}/start")
        assert missing.status_code == 404
        assert await tickets(b) == {ORDER_B: "preparing"}


async def _stage_is(system: System, order_id: str, stage: str) -> bool:
    return (await tickets(system)).get(order_id) == stage


async def sent_from(system: System) -> list[Any]:
    """Who each SendEmail on this system's bus comes from (its sealed fields opened)."""
    keys = personal.key_store(system.transport)
    return [(await personal.opened(doc, keys))["data"]["from"]
            for doc in system.published(SEND_EMAIL)]


async def test_two_order_services_send_from_their_own_address(tmp_path: Path) -> None:
    base = dataclasses.replace(config.Settings(), order_confirmed_v1="never")
    one = orders.create(dataclasses.replace(base, mail_from="orders@one.example"))
    two = orders.create(dataclasses.replace(base, mail_from="orders@two.example"))

    async with running([one], tmp_path / "one") as first, \
            running([two], tmp_path / "two") as second:
        for system in (first, second, first):
            answer = await system.http.post("/api/orders", json={
                "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
                "items": [{"menuItemId": "margherita", "quantity": 1}]})
            assert answer.status_code == 202, answer.text
            await system.settle()

        assert await sent_from(first) == ["orders@one.example"] * 2
        assert await sent_from(second) == ["orders@two.example"]
