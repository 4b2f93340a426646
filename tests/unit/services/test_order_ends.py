"""Every order ends in one state that every service agrees on, across the whole system.

The race of issue 8: orders accepts a cancel because it has not seen OrderPrepared yet,
while the kitchen publishes OrderPrepared. Orders is the authority: the order is
cancelled in orders, the kitchen, pickup and the read model, its stream ends, and the
customer is emailed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness import System, running
from pizza import config
from pizza.services.delivery import create as delivery
from pizza.services.kitchen import create as kitchen
from pizza.services.orders import create as orders
from pizza.services.pickup import create as pickup
from pizza.services.tracking import create as tracking

SEND_EMAIL = "pizza.commands.notifications.SendEmail.v1"


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    config.reset()
    config.configure(order_confirmed_v1="always", redis_url=None)
    yield
    config.reset()


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([orders, kitchen, delivery, pickup, tracking],
                       tmp_path) as running_system:
        yield running_system


async def test_a_cancel_racing_the_kitchen_ends_cancelled_everywhere(system: System) -> None:
    placed = await system.http.post("/api/orders", json={
        "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "margherita", "quantity": 1}]})
    order_id = placed.json()["orderId"]
    await system.settle()

    # The kitchen finishes the order and, before orders has heard of it, the customer
    # cancels: both are accepted.
    finished = await system.http.post(f"/api/kitchen/tickets/{order_id}/prepared")
    cancelled = await system.http.post(f"/api/orders/{order_id}/cancel")
    assert (finished.status_code, cancelled.status_code) == (202, 202), "no race was made"
    await system.settle()

    assert (await system.http.get("/api/kitchen/tickets")).json() == []
    assert (await system.http.get("/api/pickup/orders")).json() == []
    view = (await system.http.get(f"/api/orders/{order_id}")).json()
    assert view["status"] == "cancelled"
    assert "OrderPrepared" in {e["type"] for e in view["timeline"]}
    collect = await system.http.post(f"/api/pickup/orders/{order_id}/collected")
    assert collect.status_code in (404, 409)  # nobody hands a cancelled order over
    assert system.published("pizza.events.orders.OrderCompleted.") == []
    subjects = [m["data"]["subject"] for m in system.published(SEND_EMAIL)]
    assert len(subjects) == 2 and subjects[1].endswith("is cancelled")
    async with system.http.stream("GET", f"/api/orders/{order_id}/stream") as stream:
        body = (await stream.aread()).decode()  # it ends: cancelled is final
    assert '"status":"cancelled"' in body
