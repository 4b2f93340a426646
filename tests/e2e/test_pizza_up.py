"""The whole system through HTTP alone, started with `pizza up` as a user would."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from running_pizza import PIZZA, Pizza, eventually

pytestmark = pytest.mark.e2e

DELIVERY_TIMELINE = ["OrderConfirmed", "OrderPreparing", "OrderPrepared",
                     "OrderOutForDelivery", "OrderDelivered", "OrderCompleted",
                     "LoyaltyPointsAdded"]
PICKUP_TIMELINE = ["OrderConfirmed", "OrderPreparing", "OrderPrepared",
                   "OrderReadyForCollection", "OrderCollected", "OrderCompleted",
                   "LoyaltyPointsAdded"]


# Where a request's effects show on the bus: what services tell and what they ask.
STREAMS_OF_EFFECTS = ("PIZZA_EVENTS", "PIZZA_COMMANDS")


def customer() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def completed_with_points(pizza: Pizza, order_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        document = await pizza.order(order_id)
        ready = document and document["status"] == "completed" and document.get(
            "loyaltyPoints") is not None
        return document if ready else None

    return dict(await eventually(check))


async def emails_settled(pizza: Pizza, address: str, count: int) -> list[dict[str, Any]]:
    """The mailbox once ``count`` letters came and every queue is drained: a command for
    an extra letter would have been handled, and its letter stored, by then."""
    await eventually(lambda: _at_least(pizza.mailbox(address), count))
    await pizza.settled()
    return await pizza.mailbox(address)


async def _at_least(mail: Any, count: int) -> bool:
    return len(await mail) >= count


async def test_delivery_and_pickup_orders_reach_completed(start_pizza: Any) -> None:
    pizza = await start_pizza("--simulate")
    delivery_customer, pickup_customer = customer(), customer()
    delivered = await pizza.place(delivery_customer, items=[
        {"menuItemId": "margherita", "quantity": 2}])
    collected = await pizza.place(pickup_customer, pickup=True)

    for order_id, who, timeline in ((delivered, delivery_customer, DELIVERY_TIMELINE),
                                    (collected, pickup_customer, PICKUP_TIMELINE)):
        document = await completed_with_points(pizza, order_id)
        assert [entry["type"] for entry in document["timeline"]] == timeline
        times = [entry["time"] for entry in document["timeline"]]
        assert times == sorted(times)
        assert document["customerId"] == who
        assert document["itemCount"] == 2 and document["currency"] == "GBP"
        assert document["loyaltyPoints"] == int(document["value"])

        balance = (await pizza.http.get(f"/api/loyalty/{who}")).json()
        assert balance == {"customerId": who, "points": int(document["value"])}

        mail = await emails_settled(pizza, f"{who}@example.com", 2)
        assert len(mail) == 2, "one receipt and one thank-you, never more"
        assert len({m["subject"] for m in mail}) == 2


async def test_cancelled_order_is_withdrawn_and_never_delivered(start_pizza: Any) -> None:
    pizza = await start_pizza()
    order_id = await pizza.place(customer())
    await pizza.reaches(order_id, "confirmed")
    await eventually(lambda: _has_ticket(pizza, order_id))

    assert (await pizza.http.post(f"/api/orders/{order_id}/cancel")).status_code == 202
    await pizza.reaches(order_id, "cancelled")
    await eventually(lambda: _no_ticket(pizza, order_id))
    refused = await pizza.http.post(f"/api/kitchen/tickets/{order_id}/prepared")
    assert refused.status_code == 409
    jobs = (await pizza.http.get("/api/delivery/jobs")).json()
    assert order_id not in [job["orderId"] for job in jobs]

    # Once the kitchen has finished an order, it can no longer be cancelled.
    cooked = await pizza.place(customer())
    await eventually(lambda: _has_ticket(pizza, cooked))
    assert (await pizza.http.post(f"/api/kitchen/tickets/{cooked}/prepared")).status_code == 202
    await pizza.reaches(cooked, "prepared")

    async def refused_now() -> bool:
        answer = await pizza.http.post(f"/api/orders/{cooked}/cancel")
        return answer.status_code == 409 and answer.json()["error"]["code"] != ""

    await eventually(refused_now)


async def _has_ticket(pizza: Pizza, order_id: str) -> bool:
    tickets = (await pizza.http.get("/api/kitchen/tickets")).json()
    return order_id in [ticket["orderId"] for ticket in tickets]


async def _no_ticket(pizza: Pizza, order_id: str) -> bool:
    return not await _has_ticket(pizza, order_id)


async def test_one_idempotency_key_gives_one_order(start_pizza: Any) -> None:
    pizza = await start_pizza()
    who = customer()
    body = {"customerId": who, "email": f"{who}@example.com", "fulfilment": "pickup",
            "items": [{"menuItemId": "margherita", "quantity": 1}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(*(pizza.http.post("/api/orders", json=body, headers=key)
                                     for _ in range(5)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["orderId"] for a in answers}) == 1
    await pizza.reaches(answers[0].json()["orderId"], "confirmed")
    mail = await emails_settled(pizza, f"{who}@example.com", 1)
    assert len(mail) == 1, "one order, one receipt"


BAD_BODIES: list[tuple[str, Any]] = [
    ("unknown item", {"items": [{"menuItemId": "anchovy-pizza", "quantity": 1}]}),
    ("zero quantity", {"items": [{"menuItemId": "margherita", "quantity": 0}]}),
    ("negative quantity", {"items": [{"menuItemId": "margherita", "quantity": -2}]}),
    ("huge quantity", {"items": [{"menuItemId": "margherita", "quantity": 10**9}]}),
    ("fractional quantity", {"items": [{"menuItemId": "margherita", "quantity": 1.5}]}),
    ("quantity as text", {"items": [{"menuItemId": "margherita", "quantity": "two"}]}),
    ("no items", {"items": []}),
    ("items not a list", {"items": "margherita"}),
    ("missing deliveryId", {"fulfilment": "delivery"}),
    ("unknown deliveryId", {"fulfilment": "delivery", "deliveryId": "no-such-address"}),
    ("unknown fulfilment", {"fulfilment": "teleport"}),
    ("missing customer", {"customerId": None}),
    ("bad email", {"email": "not-an-email"}),
]


async def test_bad_input_is_refused_and_nothing_is_stored_or_published(
        start_pizza: Any) -> None:
    pizza = await start_pizza()
    who = customer()
    valid = {"customerId": who, "email": f"{who}@example.com", "fulfilment": "pickup",
             "items": [{"menuItemId": "margherita", "quantity": 1}]}
    await pizza.settled()
    before = {stream: await pizza.last_seq(stream) for stream in STREAMS_OF_EFFECTS}

    for name, change in BAD_BODIES:
        body = {**valid, **change}
        answer = await pizza.http.post("/api/orders", json=body)
        assert 400 <= answer.status_code < 500, f"{name}: {answer.status_code}"
        error = answer.json()["error"]
        assert error["code"] and error["message"], name
    raw_answers = [
        await pizza.http.post("/api/orders", content=b"{not json",
                              headers={"Content-Type": "application/json"}),
        await pizza.http.post("/api/orders", content=b"x" * (70 * 1024),  # > 64 KiB
                              headers={"Content-Type": "application/json"}),
        await pizza.http.post("/api/orders/no-such-order/cancel"),
        await pizza.http.post("/api/delivery-addresses", json={"customerId": who}),
    ]
    assert [a.status_code for a in raw_answers] == [400, 413, 404, 422]
    assert all("error" in a.json() for a in raw_answers)

    # Markers after the bad requests: an address (delivery) and an order (orders). Each
    # service relays its outbox in commit order, so once the markers' messages are on the
    # bus, any message a bad request had written would be there before them.
    marker = customer()
    marker_order = await pizza.place(marker)
    await pizza.reaches(marker_order, "confirmed")
    await pizza.settled()
    for stream, seq in before.items():
        since = await pizza.messages_after(stream, seq)
        assert since, f"the markers' messages reached {stream}"
        strangers = [m for m in since if marker.encode() not in m
                     and marker_order.encode() not in m]
        assert strangers == [], f"{stream} got messages from refused requests"
    assert await pizza.mailbox(f"{who}@example.com") == []


async def test_every_message_redelivered_has_no_second_effect(start_pizza: Any) -> None:
    pizza = await start_pizza("--simulate")
    who = customer()
    order_id = await pizza.place(who)
    before = await completed_with_points(pizza, order_id)
    mail_before = await emails_settled(pizza, f"{who}@example.com", 2)

    # Copy every message on the bus again, as redeliveries past the broker's dedup window.
    nc = await pizza.connect()
    js = nc.jetstream()
    copied = 0
    for stream in ("PIZZA_EVENTS", "PIZZA_COMMANDS", "PIZZA_REPLIES"):
        subscription = await js.pull_subscribe(">", stream=stream)
        total = (await js.stream_info(stream)).state.messages
        while copied_here := await _fetch(subscription, total):
            for message in copied_here:
                headers = dict(message.headers or {})
                headers["Nats-Msg-Id"] = f"again-{headers.get('Nats-Msg-Id')}"
                await js.publish(message.subject, message.data, headers=headers)
                await message.ack()
                copied += 1
            total -= len(copied_here)
    await nc.close()
    assert copied >= 10

    # Every copy was taken off its queue and acknowledged (none dead-lettered) ...
    health = await pizza.settled()
    # ... and had no effect.
    after = await pizza.order(order_id)
    assert after == before
    assert (await pizza.http.get(f"/api/loyalty/{who}")).json()["points"] == int(
        before["value"])
    assert await pizza.mailbox(f"{who}@example.com") == mail_before
    duplicates_ignored = all(q["deadLettered"] == 0 for s in health["services"].values()
                             for q in s["queues"].values())
    assert duplicates_ignored


async def _fetch(subscription: Any, remaining: int) -> list[Any]:
    if remaining <= 0:
        return []
    try:
        return list(await subscription.fetch(min(remaining, 256), timeout=1))
    except nats.errors.TimeoutError:
        return []


async def test_orders_are_accepted_while_the_broker_is_down(start_pizza: Any) -> None:
    pizza = await start_pizza("--simulate", own_broker=True)
    who = customer()
    address = await pizza.delivery_address(who)
    assert pizza.broker is not None
    known = await pizza.http.post("/api/orders", json={
        "customerId": who, "email": f"{who}@example.com", "fulfilment": "delivery",
        "deliveryId": address, "items": [{"menuItemId": "funghi", "quantity": 1}]})
    assert known.status_code == 202, "orders has learnt of the address through its event"
    await pizza.broker.stop()

    accepted = []
    for pickup in (False, True):
        body: dict[str, Any] = {"customerId": who, "email": f"{who}@example.com",
                                "fulfilment": "pickup" if pickup else "delivery",
                                "items": [{"menuItemId": "margherita", "quantity": 1}]}
        if not pickup:
            body["deliveryId"] = address
        answer = await pizza.http.post("/api/orders", json=body)
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["orderId"])

    await asyncio.sleep(1)
    await pizza.broker.start()
    for order_id in accepted:
        await completed_with_points(pizza, order_id)


async def test_replay_rebuilds_the_read_model_the_live_one_built(start_pizza: Any) -> None:
    pizza = await start_pizza("--simulate")
    placed = [await pizza.place(customer(), pickup=bool(i % 2)) for i in range(6)]
    cancelled = await pizza.place(customer())
    await pizza.http.post(f"/api/orders/{cancelled}/cancel")  # may lose to the cook: fine
    for order_id in placed:
        await completed_with_points(pizza, order_id)
    # Every event has reached the read model (whichever way the cancel race went).
    await pizza.settled()
    live = {order_id: await pizza.order(order_id) for order_id in [*placed, cancelled]}

    # Run as an operator would: from the system's PIZZA_HOME, which gives the tool the
    # system's URL (no --url) and the operator's token.
    output = await run_pizza(pizza, "replay", "tracking")
    assert "tracking rebuilt" in output

    for order_id, document in live.items():
        rebuilt = await pizza.order(order_id)
        assert rebuilt == document, (rebuilt, document)


async def run_pizza(pizza: Pizza, *args: str) -> str:
    """Run a `pizza ...` tool against the running system (same PIZZA_HOME)."""
    tool = await asyncio.create_subprocess_exec(
        PIZZA, *args, env={**pizza.process.env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(tool.communicate(), 60)
    assert tool.returncode == 0, output.decode()
    return output.decode()


async def test_tools_show_live_usage_and_dead_letters(start_pizza: Any) -> None:
    pizza = await start_pizza()
    usage = await run_pizza(pizza, "events", "usage", "OrderConfirmed")
    rows = {line.split("│")[2].strip(): line for line in usage.splitlines()
            if line.count("│") >= 5 and "OrderConfirmed" in line}
    assert "kitchen" in rows["1"] and "tracking" not in rows["1"]
    assert "tracking" in rows["2"] and "orders" in rows["2"]

    nc = await pizza.connect()
    await nc.jetstream().publish("pizza.events.orders.OrderConfirmed.v2", b"{broken",
                                 headers={"Nats-Msg-Id": str(uuid.uuid4())})
    await nc.close()

    async def listed() -> str:
        shown = await run_pizza(pizza, "deadletters", "list", "--service", "tracking")
        return shown if "malformed" in shown else ""

    shown = await eventually(listed)
    assert "tracking-order-confirmed-v2" in shown and "not JSON" in shown


async def test_pizza_order_finds_the_system_and_signs_in_from_its_home(
        start_pizza: Any) -> None:
    pizza = await start_pizza("--simulate")  # on a free port, not :8000
    output = await run_pizza(pizza, "order", "--pickup", "--customer", customer(),
                             "--wait", "60")
    assert "accepted" in output and "completed" in output, output

    token = (await run_pizza(pizza, "token", "--role", "kitchen")).strip()
    assert len(token.splitlines()) == 1
    kitchen = {"Authorization": f"Bearer {token}"}
    assert (await pizza.http.get("/api/kitchen/tickets", headers=kitchen)).status_code == 200
    assert (await pizza.http.get("/api/mailbox", headers=kitchen)).status_code == 403


async def test_pizza_up_admits_only_its_own_users_on_its_broker(start_pizza: Any) -> None:
    """Each service connects as its own user (the other tests show they all work so); a
    client without credentials is refused at the door, and the seeds are the owner's."""
    pizza = await start_pizza()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(await pizza.nats_url(), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)
    seeds = Path(pizza.process.env["PIZZA_HOME"]) / "nats" / "credentials"
    assert sorted(seed.name for seed in seeds.iterdir()) == [
        f"{name}.nk" for name in ("delivery", "kitchen", "loyalty", "notifications",
                                  "operator", "orders", "pickup", "tracking")]
    assert {seed.stat().st_mode & 0o777 for seed in seeds.iterdir()} == {0o600}

    refused: list[str] = []

    async def noted(error: Exception) -> None:
        refused.append(str(error))

    kitchen = await nats.connect(await pizza.nats_url(), error_cb=noted,
                                 inbox_prefix="_INBOX_kitchen",
                                 nkeys_seed=str(seeds / "kitchen.nk"))
    try:
        with pytest.raises(TimeoutError):
            await kitchen.jetstream().publish("pizza.events.orders.OrderCompleted.v1",
                                              b"{}", timeout=1.0)
    finally:
        await kitchen.close()
    assert any("permissions violation" in error.lower() for error in refused), refused
