"""The orders service, through its HTTP routes and the messages it sends and receives."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.logging import RichHandler
from sqlalchemy import func, select

from pizza import config
from pizza.contracts.delivery import DeliveryAddressRegisteredV1, OrderDeliveredV1
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.notifications import EmailFailedV1, EmailSentV1
from pizza.contracts.pickup import OrderCollectedV1
from pizza.eventing import Message, personal
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.base import DEAD_ERROR, DEAD_REASON, Outgoing
from pizza.eventing.transport.memory import MemoryTransport
from pizza.services.orders import create as orders_service
from pizza.services.orders import placing
from pizza.services.orders.tables import known_delivery_addresses, orders

try:
    from harness import System, eventually, running
except ImportError:  # run from another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from harness import System, eventually, running

ORDERS_OUT = ("pizza.events.orders.", "pizza.commands.")
SEND_EMAIL = "pizza.commands.notifications.SendEmail.v1"


async def sent_emails(system: Any) -> list[dict[str, Any]]:
    """The SendEmail commands on the bus, their sealed address and body opened."""
    keys = personal.key_store(system.transport)
    return [await personal.opened(doc, keys) for doc in system.published(SEND_EMAIL)]


ADDRESS_1 = "00000000-0000-4000-9000-000000000001"
ADDRESS_2 = "00000000-0000-4000-9000-000000000002"
ADDRESS_3 = "00000000-0000-4000-9000-000000000003"
GRACE_HOME = "00000000-0000-4000-9000-0000000000a1"


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    # Alone here, orders has no reader of OrderConfirmed v1 ("auto" would drop it):
    # these tests pin both versions; test_evolution covers the "auto" policy.
    config.reset()
    config.configure(order_confirmed_v1="always")
    yield
    config.reset()


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([orders_service], tmp_path) as running_system:
        yield running_system


# -- helpers ------------------------------------------------------------------------------


def body(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "customerId": "ada",
        "email": "ada@example.com",
        "items": [{"menuItemId": "margherita", "quantity": 2},
                  {"menuItemId": "lemonade", "quantity": 1}],
        "fulfilment": "pickup",
    }
    order.update(changes)
    return {k: v for k, v in order.items() if v is not ...}


async def inject(system: System, message: Message, *, message_id: str | None = None,
                 correlation_id: str | None = None, causation_id: str | None = None,
                 subject: str | None = None, nats_id: str | None = None) -> str:
    """Put a message on the bus as its producer would; its metadata id is returned."""
    info = message.info
    meta = Metadata(type=info.type, version=info.version, source=info.owner,
                    correlation_id=correlation_id, causation_id=causation_id)
    if message_id is not None:
        meta.id = message_id
    envelope = Envelope(meta, message.to_data())
    await system.transport.publish(
        [Outgoing(nats_id or meta.id, subject or info.subject, envelope.encode())])
    await system.settle()
    return meta.id


async def place(system: System, order: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await system.http.post("/api/orders", json=order, headers=headers)


async def placed(system: System, order: dict[str, Any] | None = None) -> str:
    response = await place(system, order or body())
    assert response.status_code == 202, response.text
    await system.settle()
    return str(response.json()["orderId"])


async def status_of(system: System, order_id: str) -> str | None:
    async with system.service("orders").read() as conn:
        return (await conn.execute(
            select(orders.c.status).where(orders.c.id == order_id))).scalar()


async def order_count(system: System) -> int:
    async with system.service("orders").read() as conn:
        return int((await conn.execute(select(func.count()).select_from(orders))).scalar_one())


def sent_by_orders(system: System) -> list[dict[str, Any]]:
    return [m for prefix in ORDERS_OUT for m in system.published(prefix)]


def of_type(system: System, prefix: str, order_id: str | None = None) -> list[dict[str, Any]]:
    found = system.published(prefix)
    if order_id is None:
        return found
    return [m for m in found if m["data"].get("orderId") == order_id
            or m["metadata"]["correlationId"] == order_id]


async def register_address(system: System, delivery_id: str, customer: str = "ada") -> None:
    await inject(system, DeliveryAddressRegisteredV1(delivery_id=delivery_id,
                                                     customer_id=customer))


# -- the menu -----------------------------------------------------------------------------


async def test_menu_lists_vegan_items_priced_in_pounds(system: System) -> None:
    response = await system.http.get("/api/menu")
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()}
    assert {"margherita", "pepperoni-seitan", "funghi", "garlic-bread", "lemonade"} <= set(items)
    assert items["margherita"] == {"id": "margherita", "name": items["margherita"]["name"],
                                   "price": 9.5, "currency": "GBP"}


# -- placing an order ---------------------------------------------------------------------


async def test_pickup_order_is_accepted_announced_and_receipted(system: System) -> None:
    response = await place(system, body(extraField="ignored"))

    assert response.status_code == 202
    order_id = response.json()["orderId"]
    assert response.json() == {"orderId": order_id, "status": "accepted"}
    assert response.headers["location"] == f"/api/orders/{order_id}"
    await system.settle()

    [v1] = system.published("pizza.events.orders.OrderConfirmed.v1")
    [v2] = system.published("pizza.events.orders.OrderConfirmed.v2")
    lines = [{"menuItemId": "margherita", "name": v1["data"]["items"][0]["name"],
              "quantity": 2, "unitPrice": 9.5},
             {"menuItemId": "lemonade", "name": v1["data"]["items"][1]["name"],
              "quantity": 1, "unitPrice": 3.0}]
    assert v1["data"] == {"orderId": order_id, "customerId": "ada", "items": lines,
                          "orderValue": 22.0, "fulfilment": "pickup", "deliveryId": None}
    assert v2["data"] == {**v1["data"], "orderValue": {"amount": 22.0, "currency": "GBP"}}

    [email] = await sent_emails(system)
    assert email["metadata"]["replyTo"] == "pizza.replies.orders"
    assert email["data"]["to"] == "ada@example.com"
    assert email["data"]["from"] == config.settings().mail_from
    assert email["data"]["subject"] == f"Your Plant-Based Pizza order {order_id[:8]}"
    assert "2 x " in email["data"]["body"] and "£22.00" in email["data"]["body"]

    # One story: every message of the order shares its correlationId.
    assert {m["metadata"]["correlationId"] for m in (v1, v2, email)} == {order_id}
    assert len({m["metadata"]["id"] for m in (v1, v2, email)}) == 3

    emails = await system.http.get(f"/api/orders/{order_id}/emails")
    assert emails.json() == [{"kind": "receipt", "status": "pending", "detail": None}]


async def test_delivery_order_names_its_registered_address(system: System) -> None:
    await register_address(system, ADDRESS_1)

    response = await place(system, body(fulfilment="delivery", deliveryId=ADDRESS_1))

    assert response.status_code == 202, response.text
    await system.settle()
    [v2] = system.published("pizza.events.orders.OrderConfirmed.v2")
    assert v2["data"]["fulfilment"] == "delivery"
    assert v2["data"]["deliveryId"] == ADDRESS_1


async def test_an_order_naming_a_delivery_id_not_heard_of_yet_is_confirmed_when_it_is(
        system: System) -> None:
    started = time.monotonic()
    response = await place(system, body(fulfilment="delivery", deliveryId=ADDRESS_2))
    assert response.status_code == 202, response.text  # at once: no waiting for the bus
    assert time.monotonic() - started < 1.0
    order_id = response.json()["orderId"]
    await system.settle()
    assert sent_by_orders(system) == []  # not announced before its address is known
    assert (await system.http.get(f"/api/orders/{order_id}/emails")).json() == []

    await register_address(system, ADDRESS_2)

    [v2] = system.published("pizza.events.orders.OrderConfirmed.v2")
    assert (v2["data"]["orderId"], v2["data"]["deliveryId"]) == (order_id, ADDRESS_2)
    assert v2["metadata"]["correlationId"] == order_id
    [receipt] = system.published(SEND_EMAIL)
    assert receipt["metadata"]["correlationId"] == order_id
    assert await status_of(system, order_id) == "confirmed"


async def test_orders_are_taken_while_the_broker_is_down(system: System) -> None:
    assert isinstance(system.transport, MemoryTransport)
    system.transport.go_down()
    try:
        response = await asyncio.wait_for(
            place(system, body(fulfilment="delivery", deliveryId=ADDRESS_2)), 2.0)
        assert response.status_code == 202, response.text
    finally:
        system.transport.come_back()
    await register_address(system, ADDRESS_2)
    assert len(system.published("pizza.events.orders.OrderConfirmed.v2")) == 1


async def test_an_order_whose_delivery_id_stays_unknown_ends_cancelled_with_an_email(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_DELIVERY_ID_DEADLINE", "0.3")
    response = await place(system, body(fulfilment="delivery", deliveryId=ADDRESS_3))
    assert response.status_code == 202, response.text
    order_id = response.json()["orderId"]

    [cancelled] = await eventually(
        lambda: system.published("pizza.events.orders.OrderCancelled.v1"), timeout=5.0)
    assert cancelled["data"]["orderId"] == order_id
    assert "delivery address" in cancelled["data"]["reason"]
    assert cancelled["metadata"]["correlationId"] == order_id
    await eventually(lambda: system.published(SEND_EMAIL))
    [email] = await sent_emails(system)
    assert email["data"]["to"] == "ada@example.com"
    assert "cancelled" in email["data"]["subject"]
    assert cancelled["data"]["reason"] in email["data"]["body"]
    assert await status_of(system, order_id) == "cancelled"
    assert system.published("pizza.events.orders.OrderConfirmed.") == []
    # The id's event coming after all changes nothing: the order has ended.
    await register_address(system, ADDRESS_3)
    assert system.published("pizza.events.orders.OrderConfirmed.") == []


async def test_a_waiting_order_whose_id_is_another_customers_is_cancelled(
        system: System) -> None:
    response = await place(system, body(fulfilment="delivery", deliveryId=ADDRESS_2))
    order_id = response.json()["orderId"]

    await register_address(system, ADDRESS_2, customer="grace")

    [cancelled] = system.published("pizza.events.orders.OrderCancelled.v1")
    assert cancelled["data"]["orderId"] == order_id
    assert system.published("pizza.events.orders.OrderConfirmed.") == []
    assert [e["kind"] for e in
            (await system.http.get(f"/api/orders/{order_id}/emails")).json()] == ["cancelled"]


async def test_the_deadline_job_confirms_an_order_stored_while_its_id_was_learnt(
        system: System) -> None:
    # The id's event was handled between the order's check and its commit: nothing
    # settled the order then; the background job does.
    response = await place(system, body(fulfilment="delivery", deliveryId=ADDRESS_2))
    order_id = response.json()["orderId"]
    async with system.service("orders").unit_of_work() as ctx:
        await ctx.db.execute(known_delivery_addresses.insert().values(
            delivery_id=ADDRESS_2, customer_id="ada"))

    [v2] = await eventually(
        lambda: system.published("pizza.events.orders.OrderConfirmed.v2"), timeout=5.0)
    assert v2["data"]["orderId"] == order_id


async def test_a_pickup_order_ignores_a_delivery_id(system: System) -> None:
    await placed(system, body(deliveryId="whatever"))

    [v2] = system.published("pizza.events.orders.OrderConfirmed.v2")
    assert v2["data"]["deliveryId"] is None


async def test_v1_is_not_published_when_configured_never(tmp_path: Path) -> None:
    never = dataclasses.replace(config.settings(), order_confirmed_v1="never")
    async with running([orders_service(never)], tmp_path) as system:
        await placed(system)

        assert system.published("pizza.events.orders.OrderConfirmed.v1") == []
        assert len(system.published("pizza.events.orders.OrderConfirmed.v2")) == 1


# -- bad input ----------------------------------------------------------------------------

LINE = {"menuItemId": "funghi", "quantity": 1}
BAD_BODIES: dict[str, tuple[dict[str, Any], int, str]] = {
    "no customer": (body(customerId=...), 422, "invalid-request"),
    "empty customer": (body(customerId=""), 422, "invalid-request"),
    "blank customer": (body(customerId="   "), 422, "invalid-request"),
    "long customer": (body(customerId="c" * 101), 422, "invalid-request"),
    "numeric customer": (body(customerId=42), 422, "invalid-request"),
    "no email": (body(email=...), 422, "invalid-request"),
    "email without at": (body(email="ada.example.com"), 422, "invalid-request"),
    "email without domain dot": (body(email="ada@example"), 422, "invalid-request"),
    "email with space": (body(email="ada lovelace@example.com"), 422, "invalid-request"),
    "no items": (body(items=[]), 422, "invalid-request"),
    "items missing": (body(items=...), 422, "invalid-request"),
    "items not a list": (body(items={"menuItemId": "funghi"}), 422, "invalid-request"),
    "51 lines": (body(items=[LINE] * 51), 422, "invalid-request"),
    "quantity 0": (body(items=[{**LINE, "quantity": 0}]), 422, "invalid-request"),
    "negative quantity": (body(items=[{**LINE, "quantity": -1}]), 422, "invalid-request"),
    "quantity 51": (body(items=[{**LINE, "quantity": 51}]), 422, "invalid-request"),
    "huge quantity": (body(items=[{**LINE, "quantity": 10**30}]), 422, "invalid-request"),
    "fractional quantity": (body(items=[{**LINE, "quantity": 1.5}]), 422, "invalid-request"),
    "string quantity": (body(items=[{**LINE, "quantity": "2"}]), 422, "invalid-request"),
    "boolean quantity": (body(items=[{**LINE, "quantity": True}]), 422, "invalid-request"),
    "no quantity": (body(items=[{"menuItemId": "funghi"}]), 422, "invalid-request"),
    "unknown fulfilment": (body(fulfilment="teleport"), 422, "invalid-request"),
    "no fulfilment": (body(fulfilment=...), 422, "invalid-request"),
    "delivery without id": (body(fulfilment="delivery"), 422, "delivery-id-required"),
    "malformed delivery id": (body(fulfilment="delivery", deliveryId="nowhere"), 422,
                              "unknown-delivery-id"),
    "upper-case delivery id": (body(fulfilment="delivery", deliveryId=GRACE_HOME.upper()),
                               422, "unknown-delivery-id"),
    "someone else's delivery id": (body(fulfilment="delivery", deliveryId=GRACE_HOME), 422,
                                   "unknown-delivery-id"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_order_is_refused_and_changes_nothing(
        system: System, case: str) -> None:
    await register_address(system, GRACE_HOME, customer="grace")
    order, status, code = BAD_BODIES[case]

    started = time.monotonic()
    response = await place(system, order)
    took = time.monotonic() - started

    assert response.status_code == status, response.text
    assert took < 0.2
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    await system.settle()
    assert await order_count(system) == 0
    assert sent_by_orders(system) == []


async def test_unknown_menu_items_are_named(system: System) -> None:
    items = [{"menuItemId": "pineapple", "quantity": 1}, LINE,
             {"menuItemId": "anchovies", "quantity": 2}]

    response = await place(system, body(items=items))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown-menu-item"
    assert error["details"] == {"menuItemIds": ["anchovies", "pineapple"]}
    assert await order_count(system) == 0
    assert sent_by_orders(system) == []


@pytest.mark.parametrize("raw, status, code", [
    (b'{"customerId": "ada",', 400, "malformed-json"),
    (b"", 400, "malformed-json"),
    (b'["not", "an", "object"]', 422, "invalid-request"),
])
async def test_unreadable_body_is_refused(system: System, raw: bytes, status: int,
                                          code: str) -> None:
    response = await system.http.post("/api/orders", content=raw,
                                      headers={"Content-Type": "application/json"})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert await order_count(system) == 0


async def test_oversized_body_is_refused_by_its_declared_length(system: System) -> None:
    big = body(note="x" * (64 * 1024))

    response = await place(system, big)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too-large"
    await system.settle()
    assert await order_count(system) == 0
    assert sent_by_orders(system) == []


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
        system: System) -> None:
    response = await system.http.post("/api/orders", content=b"{}",
                                      headers={"Content-Length": str(64 * 1024 + 1),
                                               "Content-Type": "application/json"})

    assert response.status_code == 413  # not 422: the body was never looked at
    assert response.json()["error"]["code"] == "too-large"


async def test_oversized_body_without_a_length_is_refused_as_it_streams(
        system: System) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"customerId": "ada", "note": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = await system.http.post("/api/orders", content=chunks(),
                                      headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too-large"
    assert await order_count(system) == 0


async def test_a_body_just_under_the_limit_is_read(system: System) -> None:
    order = body()
    order["note"] = "x" * (64 * 1024 - 400)

    assert (await place(system, order)).status_code == 202


async def test_an_overlong_idempotency_key_is_refused(system: System) -> None:
    response = await place(system, body(), key="k" * 256)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid-idempotency-key"
    assert await order_count(system) == 0


# -- idempotency --------------------------------------------------------------------------


async def test_same_key_and_body_give_the_same_order_once(system: System) -> None:
    first = await place(system, body(), key="key-1")
    await system.settle()
    again = await place(system, body(), key="key-1")
    await system.settle()

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await order_count(system) == 1
    assert len(system.published("pizza.events.orders.OrderConfirmed.v2")) == 1
    assert len(system.published(SEND_EMAIL)) == 1


async def test_same_key_with_another_body_is_refused(system: System) -> None:
    first = await place(system, body(), key="key-1")

    other = await place(system, body(items=[LINE]), key="key-1")

    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency-key-reused"
    assert await order_count(system) == 1
    different_key = await place(system, body(), key="key-2")
    assert different_key.json()["orderId"] != first.json()["orderId"]


async def test_concurrent_requests_with_one_key_make_one_order(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    look_up = placing._by_key

    async def look_up_then_dawdle(service: Any, key: str, fingerprint: str) -> str | None:
        found = await look_up(service, key, fingerprint)
        await asyncio.sleep(0.05)  # every request sees "no order yet" before any stores
        return found

    monkeypatch.setattr(placing, "_by_key", look_up_then_dawdle)

    responses = await asyncio.gather(*(place(system, body(), key="same") for _ in range(5)))
    await system.settle()

    assert [r.status_code for r in responses] == [202] * 5
    assert len({r.json()["orderId"] for r in responses}) == 1
    assert await order_count(system) == 1
    assert len(system.published("pizza.events.orders.OrderConfirmed.v2")) == 1
    assert len(system.published(SEND_EMAIL)) == 1


# -- cancelling ---------------------------------------------------------------------------


async def test_cancel_announces_once_and_is_idempotent(system: System) -> None:
    order_id = await placed(system)

    first = await system.http.post(f"/api/orders/{order_id}/cancel")
    await system.settle()
    again = await system.http.post(f"/api/orders/{order_id}/cancel")
    await system.settle()

    assert first.status_code == again.status_code == 202
    [cancelled] = system.published("pizza.events.orders.OrderCancelled.v1")
    assert cancelled["data"] == {"orderId": order_id, "reason": "cancelled by customer"}
    assert cancelled["metadata"]["correlationId"] == order_id
    _receipt, email = await sent_emails(system)  # the customer is told, once
    assert email["data"]["subject"] == (
        f"Your Plant-Based Pizza order {order_id[:8]} is cancelled")
    assert "cancelled by customer" in email["data"]["body"]
    assert email["metadata"]["correlationId"] == order_id


async def test_a_cancel_racing_the_kitchen_ends_the_order_cancelled(system: System) -> None:
    # Orders accepts the cancel before it hears of OrderPrepared, which the kitchen was
    # publishing meanwhile: orders is the authority, the order ends cancelled.
    order_id = await placed(system)
    assert (await system.http.post(f"/api/orders/{order_id}/cancel")).status_code == 202
    await inject(system, OrderPreparedV1(order_id=order_id, fulfilment="pickup"),
                 correlation_id=order_id)
    await inject(system, OrderCollectedV1(order_id=order_id), correlation_id=order_id)

    assert await status_of(system, order_id) == "cancelled"
    assert len(system.published("pizza.events.orders.OrderCancelled.v1")) == 1
    assert system.published("pizza.events.orders.OrderCompleted.v1") == []
    kinds = [e["kind"] for e in (await system.http.get(f"/api/orders/{order_id}/emails")).json()]
    assert kinds == ["receipt", "cancelled"]
    again = await system.http.post(f"/api/orders/{order_id}/cancel")
    assert again.status_code == 202  # cancelling twice is harmless, and says nothing more
    await system.settle()
    assert len(system.published(SEND_EMAIL)) == 2


@pytest.mark.parametrize("route", ["cancel", "emails"])
async def test_an_absurdly_long_order_id_is_refused_at_once(system: System, route: str) -> None:
    started = time.monotonic()
    url = f"/api/orders/{'x' * 60_000}/{route}"  # httpx's longest URL is 64 KiB
    response = await (system.http.post(url) if route == "cancel" else system.http.get(url))
    assert time.monotonic() - started < 1.0
    assert response.status_code in (404, 422)
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert len(response.content) < 2_000  # the id is not echoed back
    assert sent_by_orders(system) == []


async def test_cancel_of_an_unknown_order_is_404(system: System) -> None:
    response = await system.http.post("/api/orders/no-such-order/cancel")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"
    assert sent_by_orders(system) == []


async def test_cancel_after_the_kitchen_prepared_it_is_409(system: System) -> None:
    order_id = await placed(system)
    await inject(system, OrderPreparedV1(order_id=order_id, fulfilment="pickup"),
                 correlation_id=order_id)

    response = await system.http.post(f"/api/orders/{order_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already-prepared"
    assert system.published("pizza.events.orders.OrderCancelled.v1") == []


async def test_a_completed_order_cannot_be_cancelled(system: System) -> None:
    order_id = await placed(system)
    await inject(system, OrderCollectedV1(order_id=order_id), correlation_id=order_id)

    response = await system.http.post(f"/api/orders/{order_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already-prepared"


# -- completion ---------------------------------------------------------------------------


async def test_delivered_order_completes_once_even_when_redelivered(system: System) -> None:
    await register_address(system, ADDRESS_1)
    order_id = await placed(system, body(fulfilment="delivery", deliveryId=ADDRESS_1))
    await inject(system, OrderPreparedV1(order_id=order_id, fulfilment="delivery",
                                         delivery_id=ADDRESS_1), correlation_id=order_id)
    delivered = OrderDeliveredV1(order_id=order_id)

    first = await inject(system, delivered, correlation_id=order_id)
    await inject(system, delivered, message_id=first, nats_id=f"{first}-again",
                 correlation_id=order_id)  # past the broker's de-duplication
    await inject(system, delivered, correlation_id=order_id)  # a second, distinct report

    [completed] = system.published("pizza.events.orders.OrderCompleted.v1")
    assert completed["data"] == {"orderId": order_id, "customerId": "ada",
                                 "orderValue": 22.0, "fulfilment": "delivery"}
    assert completed["metadata"]["correlationId"] == order_id
    thanks = [m for m in await sent_emails(system)
              if m["data"]["subject"].startswith("Thank you")]
    assert len(thanks) == 1
    assert thanks[0]["data"]["to"] == "ada@example.com"
    assert thanks[0]["metadata"]["correlationId"] == order_id
    assert thanks[0]["metadata"]["replyTo"] == "pizza.replies.orders"
    kinds = [e["kind"] for e in (await system.http.get(f"/api/orders/{order_id}/emails")).json()]
    assert kinds == ["receipt", "thanks"]


async def test_delivered_before_prepared_still_completes(system: System) -> None:
    await register_address(system, ADDRESS_1)
    order_id = await placed(system, body(fulfilment="delivery", deliveryId=ADDRESS_1))

    await inject(system, OrderDeliveredV1(order_id=order_id), correlation_id=order_id)
    await inject(system, OrderPreparedV1(order_id=order_id, fulfilment="delivery",
                                         delivery_id=ADDRESS_1), correlation_id=order_id)

    assert len(system.published("pizza.events.orders.OrderCompleted.v1")) == 1
    cancel = await system.http.post(f"/api/orders/{order_id}/cancel")
    assert cancel.status_code == 409


async def test_collected_pickup_order_completes(system: System) -> None:
    order_id = await placed(system)

    await inject(system, OrderCollectedV1(order_id=order_id), correlation_id=order_id)

    [completed] = system.published("pizza.events.orders.OrderCompleted.v1")
    assert completed["data"]["fulfilment"] == "pickup"
    assert completed["data"]["orderValue"] == 22.0


async def test_a_cancelled_order_is_not_completed(system: System) -> None:
    order_id = await placed(system)
    assert (await system.http.post(f"/api/orders/{order_id}/cancel")).status_code == 202

    await inject(system, OrderCollectedV1(order_id=order_id), correlation_id=order_id)

    assert system.published("pizza.events.orders.OrderCompleted.v1") == []


# -- answers to SendEmail -----------------------------------------------------------------


async def test_email_answers_are_recorded_on_the_order(system: System) -> None:
    order_id = await placed(system)
    [receipt] = system.published(SEND_EMAIL)
    await inject(system, OrderCollectedV1(order_id=order_id), correlation_id=order_id)
    thanks = system.published(SEND_EMAIL)[1]

    await inject(system, EmailSentV1(message_id="<smtp-1@sink>"),
                 subject="pizza.replies.orders", correlation_id=order_id,
                 causation_id=receipt["metadata"]["id"])
    await inject(system, EmailFailedV1(reason="mailbox full"),
                 subject="pizza.replies.orders", correlation_id=order_id,
                 causation_id=thanks["metadata"]["id"])

    emails = (await system.http.get(f"/api/orders/{order_id}/emails")).json()
    assert emails == [{"kind": "receipt", "status": "sent", "detail": "<smtp-1@sink>"},
                      {"kind": "thanks", "status": "failed", "detail": "mailbox full"}]


async def test_emails_of_an_unknown_order_is_404(system: System) -> None:
    response = await system.http.get("/api/orders/nope/emails")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"


# -- hostile messages ---------------------------------------------------------------------


async def test_a_huge_order_id_is_dead_lettered_at_once_while_http_answers(
        system: System, caplog: pytest.LogCaptureFixture) -> None:
    # Log as `pizza up` does (rich, INFO): rendering a 100 KB id there took ~54 s.
    caplog.set_level(logging.INFO)
    rich = RichHandler(console=Console(file=io.StringIO(), width=120), show_path=False)
    logging.getLogger().addHandler(rich)
    try:
        meta = Metadata(type="OrderCollected", version=1, source="pickup")
        hostile = Envelope(meta, {"orderId": "x" * 100_000})
        await system.transport.publish(
            [Outgoing(meta.id, OrderCollectedV1.info.subject, hostile.encode())])
        started, slowest = time.monotonic(), 0.0
        while not system.published("pizza.deadletters."):
            asked = time.monotonic()
            assert (await system.http.get("/api/menu")).status_code == 200
            slowest = max(slowest, time.monotonic() - asked)
            assert time.monotonic() - started < 3.0, "not dead-lettered in time"
            await asyncio.sleep(0.01)
    finally:
        logging.getLogger().removeHandler(rich)
    assert slowest < 0.5
    [(_subject, _data, headers)] = system.transport.messages("pizza.deadletters.")
    assert headers[DEAD_REASON] == "malformed"
    assert len(headers[DEAD_ERROR]) < 4_100
    assert sent_by_orders(system) == []
