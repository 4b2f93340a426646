"""The staff lists in pages: what the boards read instead of the whole of every list.

Without parameters each list answers what the contract says (the other tests of each
service); with them, a board gets the work to do plus what finished lately, and the
history page by page, following the ``Link: rel="next"`` header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, update

from harness import System, publish, running
from pizza import config
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1, OrderLine
from pizza.services.delivery import create as delivery
from pizza.services.delivery.tables import jobs
from pizza.services.kitchen import create as kitchen
from pizza.services.kitchen.tables import tickets
from pizza.services.notifications import create as notifications
from pizza.services.notifications import mailbox as sink
from pizza.services.pickup import create as pickup
from pizza.services.pickup.tables import counter


def order_n(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def confirmed(order_id: str) -> OrderConfirmedV1:
    return OrderConfirmedV1(
        order_id=order_id, customer_id="c-1", order_value=9.5, fulfilment="pickup",
        delivery_id=None, items=[OrderLine(menu_item_id="margherita", name="Margherita",
                                           quantity=1, unit_price=9.5)])


def prepared(order_id: str, fulfilment: str) -> OrderPreparedV1:
    return OrderPreparedV1(order_id=order_id, fulfilment=fulfilment, delivery_id=None)


async def ids(system: System, path: str, **params: Any) -> list[str]:
    response = await system.http.get(path, params=params)
    assert response.status_code == 200, response.text
    return [item["orderId"] for item in response.json()]


async def every_page(http: httpx.AsyncClient, url: str) -> list[list[dict[str, Any]]]:
    """Follow Link rel=next from ``url`` to the end: the pages."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        response = await http.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        link = response.links.get("next")
        next_url = link["url"] if link else None
        assert len(pages) < 20, "paging never ends"
    return pages


async def finished_long_ago(system: System, name: str, table: Table, order_id: str) -> None:
    """As if this item changed stage an hour ago (in service ``name``'s database)."""
    async with system.runtime.hosts[name].db.begin() as conn:
        await conn.execute(update(table).where(table.c.order_id == order_id)
                           .values(updated_at=datetime.now(UTC) - timedelta(hours=1)))


# -- kitchen -----------------------------------------------------------------------------

@pytest.fixture
async def kitchen_system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([kitchen], tmp_path) as system:
        yield system


async def test_the_kitchen_board_drops_tickets_prepared_long_ago(
        kitchen_system: System) -> None:
    system = kitchen_system
    for n in range(1, 5):
        await publish(system, confirmed(order_n(n)))
    await system.http.post(f"/api/kitchen/tickets/{order_n(1)}/prepared")
    await system.http.post(f"/api/kitchen/tickets/{order_n(2)}/prepared")
    await system.http.post(f"/api/kitchen/tickets/{order_n(3)}/start")
    await finished_long_ago(system, "kitchen", tickets, order_n(1))
    await finished_long_ago(system, "kitchen", tickets, order_n(4))  # waiting long: still to do

    board = await ids(system, "/api/kitchen/tickets", finishedWithin=600)
    assert board == [order_n(2), order_n(3), order_n(4)]
    assert await ids(system, "/api/kitchen/tickets") == [order_n(n) for n in range(1, 5)]
    assert await ids(system, "/api/kitchen/tickets", stage=["new", "preparing"]) == [
        order_n(3), order_n(4)]


async def test_the_kitchen_history_pages_latest_first_to_the_end(
        kitchen_system: System) -> None:
    system = kitchen_system
    for n in range(1, 6):
        await publish(system, confirmed(order_n(n)))
        await system.http.post(f"/api/kitchen/tickets/{order_n(n)}/prepared")
    await publish(system, confirmed(order_n(6)))  # not finished: not history

    pages = await every_page(system.http,
                             "/api/kitchen/tickets?stage=prepared&order=latest&limit=2")
    assert [[t["orderId"] for t in page] for page in pages] == [
        [order_n(5), order_n(4)], [order_n(3), order_n(2)], [order_n(1)]]
    assert all(t["stage"] == "prepared" for page in pages for t in page)


async def test_the_kitchen_list_pages_oldest_first_with_after(kitchen_system: System) -> None:
    system = kitchen_system
    for n in range(1, 6):
        await publish(system, confirmed(order_n(n)))
    await publish(system, OrderCancelledV1(order_id=order_n(2), reason="changed my mind"))
    pages = await every_page(system.http, "/api/kitchen/tickets?limit=3")
    assert [[t["orderId"] for t in page] for page in pages] == [
        [order_n(1), order_n(3), order_n(4)], [order_n(5)]]
    first = await system.http.get("/api/kitchen/tickets", params={"limit": 3})
    assert first.links["next"]["url"].startswith("/api/kitchen/tickets?")
    # Nothing comes after an order the kitchen never saw.
    assert await ids(system, "/api/kitchen/tickets", after="no-such-order") == []


async def test_an_unchanged_list_is_answered_304_without_a_body(
        kitchen_system: System) -> None:
    system = kitchen_system
    await publish(system, confirmed(order_n(1)))
    path = "/api/kitchen/tickets?stage=new&limit=10"
    first = await system.http.get(path)
    tag = first.headers["ETag"]
    assert "no-cache" in first.headers["Cache-Control"]
    again = await system.http.get(path, headers={"If-None-Match": tag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", tag)

    await publish(system, confirmed(order_n(2)))
    changed = await system.http.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert [t["orderId"] for t in changed.json()] == [order_n(1), order_n(2)]
    assert changed.headers["ETag"] != tag


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 201}, {"stage": "withdrawn"}, {"order": "random"},
    {"finishedWithin": 0}, {"before": "x" * 101},
])
async def test_the_kitchen_refuses_paging_out_of_bounds(kitchen_system: System,
                                                        params: dict[str, Any]) -> None:
    response = await kitchen_system.http.get("/api/kitchen/tickets", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid-request"


# -- delivery and pickup -----------------------------------------------------------------

async def test_the_delivery_board_shows_work_and_lately_delivered(tmp_path: Path) -> None:
    async with running([delivery], tmp_path) as system:
        for n in range(1, 5):
            await publish(system, prepared(order_n(n), "delivery"))
        for n in (1, 2, 3):
            await system.http.post(f"/api/delivery/jobs/{order_n(n)}/out-for-delivery",
                                   json={"driver": "Asha"})
        for n in (1, 2):
            await system.http.post(f"/api/delivery/jobs/{order_n(n)}/delivered")
        await finished_long_ago(system, "delivery", jobs, order_n(1))

        path = "/api/delivery/jobs"
        assert await ids(system, path) == [order_n(3), order_n(4)]  # the contract's
        board = await ids(system, path, stage=["awaiting", "out", "delivered"],
                          finishedWithin=600)
        assert board == [order_n(2), order_n(3), order_n(4)]
        history = await every_page(system.http,
                                   f"{path}?stage=delivered&order=latest&limit=1")
        assert [[j["orderId"] for j in page] for page in history] == [
            [order_n(2)], [order_n(1)]]


async def test_the_pickup_board_shows_waiting_and_lately_collected(tmp_path: Path) -> None:
    async with running([pickup], tmp_path) as system:
        for n in range(1, 4):
            await publish(system, prepared(order_n(n), "pickup"))
        for n in (1, 2):
            await system.http.post(f"/api/pickup/orders/{order_n(n)}/collected")
        await finished_long_ago(system, "pickup", counter, order_n(1))

        path = "/api/pickup/orders"
        assert await ids(system, path) == [order_n(3)]
        assert await ids(system, path, stage=["waiting", "collected"],
                         finishedWithin=600) == [order_n(2), order_n(3)]
        history = await every_page(system.http,
                                   f"{path}?stage=collected&order=latest&limit=1")
        assert [[o["orderId"] for o in page] for page in history] == [
            [order_n(2)], [order_n(1)]]


# -- the mailbox -------------------------------------------------------------------------

@pytest.fixture
async def mail_system(tmp_path: Path) -> AsyncIterator[System]:
    config.reset()
    async with running([notifications], tmp_path) as system:
        yield system
    config.reset()


def letter(to: str, subject: str) -> sink.Letter:
    return sink.Letter(to=to, sender="orders@plant-based.pizza", subject=subject,
                       body=f"Dear {to}", received_at=datetime.now(UTC))


async def test_the_mailbox_searches_and_pages_latest_first(mail_system: System) -> None:
    http = mail_system.http
    db = mail_system.runtime.hosts["notifications"].db
    await sink.store(db, [letter(f"c{n}@example.com", f"Your order {n} 100% plant-based")
                      for n in range(1, 6)] + [letter("ADA@example.com", "Receipt")])

    everything = (await http.get("/api/mailbox")).json()
    assert [x["to"] for x in everything][:2] == ["c1@example.com", "c2@example.com"]
    assert len(everything) == 6 and "Link" not in (await http.get("/api/mailbox")).headers

    pages = await every_page(http, "/api/mailbox?q=ORDER&order=latest&limit=2")
    assert [[x["to"] for x in page] for page in pages] == [
        ["c5@example.com", "c4@example.com"], ["c3@example.com", "c2@example.com"],
        ["c1@example.com"]]
    assert [x["to"] for x in (await http.get("/api/mailbox", params={"q": "ada@"})).json()
            ] == ["ADA@example.com"]
    # q is text, not a pattern: "%" and "_" match themselves only.
    assert len((await http.get("/api/mailbox", params={"q": "100%"})).json()) == 5
    assert (await http.get("/api/mailbox", params={"q": "_"})).json() == []
    assert (await http.get("/api/mailbox", params={"q": "x" * 101})).status_code == 422
    assert (await http.get("/api/mailbox", params={"limit": 500})).status_code == 422
