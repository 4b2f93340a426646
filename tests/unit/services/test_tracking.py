"""Tracking: the read model of an order, built from events arriving in any order.

Every behaviour runs on both stores: the service's SQLite table and Redis (skipped, with
a message naming Redis, when 127.0.0.1:6379 does not answer).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from harness import System, deliver, envelope, running
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
from pizza.eventing.transport.base import Outgoing
from pizza.services.tracking import api as api_module
from pizza.services.tracking import create as tracking
from pizza.services.tracking import store as store_module

REDIS_URL = "redis://127.0.0.1:6379/0"
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


ADDRESS_1 = "00000000-0000-4000-9000-000000000001"
ORDER_1 = "00000000-0000-4000-8000-000000000001"
ORDER_101 = "00000000-0000-4000-8000-000000000101"
ORDER_102 = "00000000-0000-4000-8000-000000000102"
ORDER_103 = "00000000-0000-4000-8000-000000000103"
ORDER_104 = "00000000-0000-4000-8000-000000000104"
ORDER_105 = "00000000-0000-4000-8000-000000000105"
ORDER_106 = "00000000-0000-4000-8000-000000000106"
ORDER_2 = "00000000-0000-4000-8000-000000000002"
ORDER_4 = "00000000-0000-4000-8000-000000000004"
ORDER_5 = "00000000-0000-4000-8000-000000000005"
ORDER_6 = "00000000-0000-4000-8000-000000000006"
ORDER_7 = "00000000-0000-4000-8000-000000000007"
ORDER_8 = "00000000-0000-4000-8000-000000000008"
ORDER_9 = "00000000-0000-4000-8000-000000000009"


def at(seconds: float) -> str:
    moment = START + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def confirmed(order_id: str, fulfilment: str = "delivery",
              customer_id: str = "c-1") -> OrderConfirmedV2:
    """The version the read model is built from (it moved from v1 to v2)."""
    return OrderConfirmedV2(
        order_id=order_id, customer_id=customer_id,
        order_value=Money(amount=21.5, currency="GBP"), fulfilment=fulfilment,
        delivery_id=ADDRESS_1 if fulfilment == "delivery" else None,
        items=[OrderLine(menu_item_id="margherita", name="Margherita", quantity=2,
                         unit_price=9.5),
               OrderLine(menu_item_id="garlic-bread", name="Garlic bread", quantity=1,
                         unit_price=2.5)])


def delivery_story(order_id: str) -> list[Event]:
    return [
        confirmed(order_id),
        OrderPreparingV1(order_id=order_id),
        OrderPreparedV1(order_id=order_id, fulfilment="delivery", delivery_id=ADDRESS_1),
        OrderOutForDeliveryV1(order_id=order_id, driver="Ada"),
        OrderDeliveredV1(order_id=order_id),
        OrderCompletedV1(order_id=order_id, customer_id="c-1", order_value=21.5,
                         fulfilment="delivery"),
        LoyaltyPointsAddedV1(customer_id="c-1", order_id=order_id, points=21, balance=21),
    ]


def pickup_story(order_id: str) -> list[Event]:
    return [
        confirmed(order_id, "pickup"),
        OrderPreparingV1(order_id=order_id),
        OrderPreparedV1(order_id=order_id, fulfilment="pickup"),
        OrderReadyForCollectionV1(order_id=order_id),
        OrderCollectedV1(order_id=order_id),
        OrderCompletedV1(order_id=order_id, customer_id="c-1", order_value=21.5,
                         fulfilment="pickup"),
        LoyaltyPointsAddedV1(customer_id="c-1", order_id=order_id, points=21, balance=42),
    ]


async def tell(system: System, story: Sequence[Event], order: Sequence[int] | None = None
               ) -> list[Envelope]:
    """Deliver a story, event i stamped ``at(i)``, in the given order of indexes."""
    envelopes = [envelope(event, at(i)) for i, event in enumerate(story)]
    for i in order if order is not None else range(len(story)):
        await deliver(system, envelopes[i])
    return envelopes


async def view(system: System, order_id: str) -> dict[str, Any]:
    response = await system.http.get(f"/api/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(params=["sql", "redis"])
async def store_kind(request: pytest.FixtureRequest,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """Which store the service uses; Redis with a key prefix of this test's own."""
    if request.param == "sql":
        config.configure(redis_url=None)
        yield "sql"
        config.reset()
        return
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as error:
        await client.aclose()
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {error}")
    prefix = f"pizza-test:{uuid.uuid4().hex}"
    monkeypatch.setattr(store_module, "REDIS_KEY_PREFIX", prefix)
    config.configure(redis_url=REDIS_URL)
    try:
        yield "redis"
    finally:
        config.reset()
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def system(store_kind: str, tmp_path: Path) -> AsyncIterator[System]:
    async with running([tracking], tmp_path) as running_system:
        yield running_system


def expected(order_id: str, fulfilment: str, steps: list[str]) -> dict[str, Any]:
    return {
        "orderId": order_id, "customerId": "c-1", "status": "completed", "value": 21.5,
        "currency": "GBP", "itemCount": 3, "fulfilment": fulfilment, "loyaltyPoints": 21,
        "timeline": [{"type": step, "time": at(i)} for i, step in enumerate(steps)],
    }


async def test_a_delivery_story_ends_completed_with_its_whole_timeline(
        system: System) -> None:
    await tell(system, delivery_story(ORDER_1))

    assert await view(system, ORDER_1) == expected(ORDER_1, "delivery", [
        "OrderConfirmed", "OrderPreparing", "OrderPrepared", "OrderOutForDelivery",
        "OrderDelivered", "OrderCompleted", "LoyaltyPointsAdded"])


async def test_a_pickup_story_passes_ready_for_collection_and_ends_completed(
        system: System) -> None:
    story = pickup_story(ORDER_2)
    envelopes = await tell(system, story[:4])
    assert (await view(system, ORDER_2))["status"] == "ready-for-collection"

    for env in envelopes:  # redelivered: no second effect
        await deliver(system, env, nats_id=f"{env.metadata.id}-again")
    for i in range(4, len(story)):
        await deliver(system, envelope(story[i], at(i)))

    assert await view(system, ORDER_2) == expected(ORDER_2, "pickup", [
        "OrderConfirmed", "OrderPreparing", "OrderPrepared", "OrderReadyForCollection",
        "OrderCollected", "OrderCompleted", "LoyaltyPointsAdded"])


async def test_events_in_reverse_give_the_same_document_as_in_order(system: System) -> None:
    forward = [envelope(event, at(i)) for i, event in enumerate(delivery_story(ORDER_101))]
    reverse = [envelope(event, at(i)) for i, event in enumerate(delivery_story(ORDER_102))]
    for first, last in zip(forward, reversed(reverse), strict=True):
        # One settle per step: both orders advance together, each in its own order.
        await system.transport.publish([
            Outgoing(env.metadata.id, f"pizza.events.{env.metadata.source}."
                     f"{env.metadata.type}.v{env.metadata.version}", env.encode())
            for env in (first, last)])
        await system.settle()

    in_order, backwards = await view(system, ORDER_101), await view(system, ORDER_102)
    assert {**backwards, "orderId": ORDER_101} == in_order
    assert in_order["status"] == "completed"
    assert len(in_order["timeline"]) == 7


async def test_a_repeated_event_does_not_repeat_in_the_timeline(system: System) -> None:
    envelopes = await tell(system, delivery_story(ORDER_4)[:3])
    for env in envelopes:  # the same message again (past the broker)...
        await deliver(system, env, nats_id=f"{env.metadata.id}-again")
    for i, event in enumerate(delivery_story(ORDER_4)[:3]):  # ...and republished later
        await deliver(system, envelope(event, at(100 + i)))

    document = await view(system, ORDER_4)
    assert document["timeline"] == [
        {"type": "OrderConfirmed", "time": at(0)},
        {"type": "OrderPreparing", "time": at(1)},
        {"type": "OrderPrepared", "time": at(2)},
    ]
    assert document["status"] == "prepared"


async def test_a_cancelled_order_stays_cancelled_when_older_steps_arrive_late(
        system: System) -> None:
    cancelled = OrderCancelledV1(order_id=ORDER_5, reason="changed my mind")
    await deliver(system, envelope(cancelled, at(2)))
    await deliver(system, envelope(confirmed(ORDER_5), at(0)))
    await deliver(system, envelope(OrderPreparingV1(order_id=ORDER_5), at(1)))

    document = await view(system, ORDER_5)
    assert document["status"] == "cancelled"
    assert [e["type"] for e in document["timeline"]] == [
        "OrderConfirmed", "OrderPreparing", "OrderCancelled"]


@pytest.mark.parametrize("arrival", ["prepared first", "cancelled first"])
async def test_a_cancel_racing_the_kitchen_ends_cancelled_and_so_does_the_stream(
        system: System, arrival: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Orders accepted the cancel before it heard of OrderPrepared, which the kitchen was
    # publishing meanwhile: orders is the authority, so the order is cancelled, whichever
    # of the two events this queue gets first.
    monkeypatch.setattr(api_module, "APPEAR_SECONDS", 0.5, raising=False)
    confirm, preparing, prepared = [envelope(e, at(i))
                                    for i, e in enumerate(delivery_story(ORDER_6)[:3])]
    cancel = envelope(OrderCancelledV1(order_id=ORDER_6, reason="cancelled by customer"),
                      at(3))
    await deliver(system, confirm)
    await deliver(system, preparing)
    reading = asyncio.create_task(read_stream(system, ORDER_6))
    await until_listening(system, ORDER_6)

    for env in ([prepared, cancel] if arrival == "prepared first" else [cancel, prepared]):
        await deliver(system, env)
        await asyncio.sleep(0.1)  # let the stream see each step on its own
    async with asyncio.timeout(3):  # the stream ends: cancelled is final
        statuses = [data["status"] for _, data in sse_events(await reading)]

    document = await view(system, ORDER_6)
    assert document["status"] == "cancelled"
    assert statuses[-1] == "cancelled"
    assert {e["type"] for e in document["timeline"]} == {
        "OrderConfirmed", "OrderPreparing", "OrderPrepared", "OrderCancelled"}


async def test_an_order_cancelled_before_it_was_confirmed_is_shown_cancelled(
        system: System) -> None:
    # Orders cancels an order whose delivery id never became known: it was never confirmed.
    await deliver(system, envelope(OrderCancelledV1(order_id=ORDER_5, reason="no address"),
                                   at(1)))

    document = await view(system, ORDER_5)
    assert (document["status"], document["orderId"]) == ("cancelled", ORDER_5)


async def test_the_stream_of_an_unknown_order_is_404(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_module, "APPEAR_SECONDS", 0.3, raising=False)
    async with asyncio.timeout(3):
        response = await system.http.get(f"/api/orders/{ORDER_5}/stream")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"
    assert set(response.json()["error"]) == {"code", "message", "details"}


async def test_the_stream_of_what_cannot_be_an_order_id_is_404_at_once(
        system: System) -> None:
    async with asyncio.timeout(0.5):  # orders makes UUIDs: nothing else ever appears
        response = await system.http.get("/api/orders/no-such-order/stream")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not-found"


async def test_the_stream_waits_a_moment_for_an_order_about_to_appear(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    # A client opens the stream right after its 202, before the query side has the order.
    monkeypatch.setattr(api_module, "APPEAR_SECONDS", 3.0, raising=False)
    story = [envelope(e, at(i)) for i, e in enumerate(pickup_story(ORDER_5))]
    reading = asyncio.create_task(read_stream(system, ORDER_5))
    await until_listening(system, ORDER_5)
    await tell_envelopes(system, story[:1])
    await asyncio.sleep(0.1)
    await deliver(system, envelope(OrderCancelledV1(order_id=ORDER_5, reason="x"), at(9)))
    async with asyncio.timeout(3):
        statuses = [data["status"] for _, data in sse_events(await reading)]
    assert statuses[0] == "confirmed" and statuses[-1] == "cancelled"


@pytest.mark.parametrize("path", ["", "/stream"])
async def test_an_absurdly_long_order_id_is_refused_at_once(system: System, path: str) -> None:
    async with asyncio.timeout(1):
        response = await system.http.get(f"/api/orders/{'x' * 60_000}{path}")
    assert response.status_code in (404, 422)
    assert len(response.content) < 2_000  # the id is not echoed back


async def test_an_order_is_not_found_until_confirmed_then_complete(system: System) -> None:
    missing = await system.http.get(f"/api/orders/{ORDER_7}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not-found"

    await deliver(system, envelope(OrderPreparingV1(order_id=ORDER_7), at(1)))
    await deliver(system, envelope(
        LoyaltyPointsAddedV1(customer_id="c-1", order_id=ORDER_7, points=5, balance=5), at(2)))
    early = await system.http.get(f"/api/orders/{ORDER_7}")
    assert early.status_code == 404
    assert set(early.json()["error"]) == {"code", "message", "details"}

    await deliver(system, envelope(confirmed(ORDER_7), at(0)))
    document = await view(system, ORDER_7)
    assert document["status"] == "preparing"
    assert (document["customerId"], document["value"], document["itemCount"],
            document["loyaltyPoints"]) == ("c-1", 21.5, 3, 5)


async def test_a_customers_orders_are_listed_newest_first(system: System) -> None:
    await deliver(system, envelope(confirmed(ORDER_103), at(0)))
    await deliver(system, envelope(confirmed(ORDER_104), at(60)))
    await deliver(system, envelope(confirmed(ORDER_105, customer_id="c-2"), at(30)))
    await deliver(system, envelope(OrderPreparingV1(order_id=ORDER_106), at(90)))

    response = await system.http.get("/api/orders", params={"customerId": "c-1"})
    assert response.status_code == 200
    assert [o["orderId"] for o in response.json()] == [ORDER_104, ORDER_103]
    missing = await system.http.get("/api/orders")
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "invalid-request"


async def test_clearing_the_store_forgets_every_order(system: System) -> None:
    await tell(system, delivery_story(ORDER_8)[:2])
    await system.service("tracking").read_models.clear(system.runtime.hosts["tracking"])
    assert (await system.http.get(f"/api/orders/{ORDER_8}")).status_code == 404


async def read_stream(system: System, order_id: str) -> str:
    """The whole body of the order's stream (httpx's ASGI transport hands it over when
    the response ends, so run this as a task)."""
    async with system.http.stream("GET", f"/api/orders/{order_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return (await response.aread()).decode()


async def until_listening(system: System, order_id: str) -> None:
    hub = system.service("tracking").read_models.current().hub
    for _ in range(200):
        if hub.listeners(order_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never started listening")


async def tell_envelopes(system: System, envelopes: Sequence[Envelope]) -> None:
    for env in envelopes:
        await deliver(system, env)


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), orjson.loads(fields["data"])))
    return events


async def test_the_stream_sends_the_current_document_then_each_change_then_ends(
        system: System) -> None:
    story = delivery_story(ORDER_9)
    envelopes = [envelope(event, at(i)) for i, event in enumerate(story)]
    await deliver(system, envelopes[0])

    async def read_stream() -> str:
        async with system.http.stream("GET", f"/api/orders/{ORDER_9}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return (await response.aread()).decode()

    # httpx's ASGI transport hands over the body when the response ends, so read it in
    # the background, wait until the stream listens, then tell the rest of the story.
    reading = asyncio.create_task(read_stream())
    hub = system.service("tracking").read_models.current().hub
    for _ in range(200):
        if hub.listeners(ORDER_9):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the stream never started listening")
    for env in envelopes[1:]:  # up to OrderCompleted, then its loyalty points
        await deliver(system, env)
        await asyncio.sleep(0.1)  # let the stream see each step on its own
    async with asyncio.timeout(3):
        body = await reading

    events = sse_events(body)
    assert {name for name, _ in events} == {"order"}
    assert [data["status"] for _, data in events] == [
        "confirmed", "preparing", "prepared", "out-for-delivery", "delivered", "completed",
        "completed"], "a completed order's stream waits for its loyalty points"
    assert events[-1][1]["orderId"] == ORDER_9
    assert events[-1][1]["loyaltyPoints"] == 21
    assert hub.listeners(ORDER_9) == 0
