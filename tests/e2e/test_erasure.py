"""Forgetting a customer, end to end: `pizza up` on the test's own broker, two customers'
orders taken to the end (emails sent), one customer forgotten with `pizza customers
forget`. Then no API shows that customer's email or address, no stream holds them
readable (every byte of every stream on the broker is scanned), the other customer is
untouched, and points and order counts are still right."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError, NotFoundError
from running_pizza import PIZZA, Pizza, eventually

from pizza.contracts.notifications import SendEmailV1
from pizza.eventing import personal
from pizza.eventing.envelope import Envelope

pytestmark = pytest.mark.e2e


async def accepted(response: Any) -> bool:
    return bool((await response).status_code == 202)


async def cooked(pizza: Pizza, order_id: str) -> None:
    """The kitchen starts and finishes it (once its ticket is there)."""
    await eventually(lambda: accepted(pizza.http.post(
        f"/api/kitchen/tickets/{order_id}/start")))
    await eventually(lambda: accepted(pizza.http.post(
        f"/api/kitchen/tickets/{order_id}/prepared")))


async def handed_over(pizza: Pizza, order_id: str, *, pickup: bool) -> None:
    if pickup:
        await eventually(lambda: accepted(pizza.http.post(
            f"/api/pickup/orders/{order_id}/collected")))
        return
    await eventually(lambda: accepted(pizza.http.post(
        f"/api/delivery/jobs/{order_id}/out-for-delivery", json={"driver": "Dee"})))
    await eventually(lambda: accepted(pizza.http.post(
        f"/api/delivery/jobs/{order_id}/delivered")))


class Customer:
    def __init__(self, name: str) -> None:
        self.id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.email = f"{self.id}@example.com"
        self.street = f"{uuid.uuid4().int % 900 + 100} {name.title()} Lane"
        self.orders: list[str] = []

    async def order(self, pizza: Pizza, *, pickup: bool = False) -> str:
        body: dict[str, Any] = {"customerId": self.id, "email": self.email,
                                "items": [{"menuItemId": "margherita", "quantity": 2}],
                                "fulfilment": "pickup" if pickup else "delivery"}
        if not pickup:
            registered = await pizza.http.post("/api/delivery-addresses", json={
                "customerId": self.id, "line1": self.street, "city": "London",
                "postcode": "E1 6AN"})
            assert registered.status_code == 201, registered.text
            body["deliveryId"] = registered.json()["deliveryId"]
        response = await pizza.http.post("/api/orders", json=body)
        assert response.status_code == 202, response.text
        self.orders.append(response.json()["orderId"])
        return str(response.json()["orderId"])


async def what_the_apis_say(pizza: Pizza, customers: list[Customer]) -> str:
    """Every answer an operator can get about these customers, as one text."""
    answers = [(await pizza.http.get("/api/mailbox")).text,
               (await pizza.http.get("/api/delivery/jobs")).text,
               (await pizza.http.get("/api/pickup/orders")).text,
               (await pizza.http.get("/api/kitchen/tickets")).text]
    for customer in customers:
        answers.append((await pizza.http.get("/api/mailbox",
                                             params={"to": customer.email})).text)
        answers.append((await pizza.http.get(f"/api/loyalty/{customer.id}")).text)
        answers.append((await pizza.http.get("/api/orders",
                                             params={"customerId": customer.id})).text)
        for order_id in customer.orders:
            answers.append((await pizza.http.get(f"/api/orders/{order_id}")).text)
            answers.append((await pizza.http.get(f"/api/orders/{order_id}/emails")).text)
    return "\n".join(answers)


async def every_stored_byte(url: str) -> tuple[bytes, list[Envelope]]:
    """Every message of every stream on the broker (KV buckets included), data and
    headers, and the SendEmail commands among them."""
    nc = await nats.connect(url)
    found: list[bytes] = []
    commands: list[Envelope] = []
    try:
        js = nc.jetstream()
        for stream in await js.streams_info():
            state = stream.state
            if not state.messages:
                continue
            for seq in range(max(1, state.first_seq), state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream.config.name, seq)
                except NotFoundError:
                    continue  # deleted (a purged key, a removed dead letter)
                found.append(msg.data or b"")
                found.append(repr(msg.headers or {}).encode())
                if (msg.subject or "").startswith(SendEmailV1.info.subject):
                    commands.append(Envelope.decode(msg.data or b""))
    finally:
        await nc.close()
    return b"\n".join(found), commands


async def test_a_forgotten_customer_is_gone_from_every_api_and_stream(
        start_pizza: Any) -> None:
    pizza = await start_pizza(own_broker=True)
    assert pizza.broker is not None
    ada, bob = Customer("ada"), Customer("bob")

    # Both customers' orders go to the end, with their receipts and thank-you notes.
    for who in (ada, bob):
        delivered = await who.order(pizza)
        collected = await who.order(pizza, pickup=True)
        for order_id, pickup in ((delivered, False), (collected, True)):
            await cooked(pizza, order_id)
            await handed_over(pizza, order_id, pickup=pickup)
            await pizza.reaches(order_id, "completed")
        await eventually(lambda who=who: _letters(pizza, who.email, 4))
    # One more delivery each, cooked and waiting for a driver when Ada is forgotten.
    ada_waiting, bob_waiting = await ada.order(pizza), await bob.order(pizza)
    for order_id in (ada_waiting, bob_waiting):
        await cooked(pizza, order_id)
    await eventually(lambda: _letters(pizza, ada.email, 5))
    await pizza.settled()
    before = await what_the_apis_say(pizza, [ada, bob])
    assert ada.email in before and ada.street in before  # the test can see them

    forgot = await asyncio.to_thread(
        subprocess.run, [PIZZA, "customers", "forget", ada.id, "--url", pizza.process.url],
        env=pizza.process.env, capture_output=True, text=True, timeout=30)
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    await pizza.settled()

    # The waiting orders end as usual; Ada gets no email about hers any more.
    for order_id in (ada_waiting, bob_waiting):
        await handed_over(pizza, order_id, pickup=False)
        await pizza.reaches(order_id, "completed")
    await eventually(lambda: _letters(pizza, bob.email, 6))
    await pizza.settled()

    after = await what_the_apis_say(pizza, [ada, bob])
    assert ada.email not in after and ada.street not in after
    assert await pizza.mailbox(ada.email) == []
    assert len(await pizza.mailbox(bob.email)) == 6  # Bob untouched: 3 receipts, 3 thanks

    # Points and orders are not personal data: they are all still there.
    for who in (ada, bob):
        documents = [await pizza.order(order_id) for order_id in who.orders]
        assert all(doc and doc["status"] == "completed" for doc in documents)
        earned = sum(int(doc["value"]) for doc in documents if doc)
        points = (await pizza.http.get(f"/api/loyalty/{who.id}")).json()["points"]
        assert points == earned
        listed = (await pizza.http.get("/api/orders", params={"customerId": who.id})).json()
        assert len(listed) == 3

    # On the broker: no address, no body in the clear, anywhere; Ada's key is gone, so
    # her emails cannot be opened, while Bob's still can (by anyone holding the keys).
    url = pizza.broker.url  # the test's own broker (PIZZA_NATS_URL): every stream it has
    stored, commands = await every_stored_byte(url)
    assert commands, "pizza up did not use the broker PIZZA_NATS_URL names"
    assert ada.email.encode() not in stored and ada.street.encode() not in stored
    assert bob.email.encode() not in stored
    for body_text in ("Thank you for ordering", "Enjoy your meal!", "Total: £"):
        assert body_text.encode() not in stored  # no email body in the clear
    assert len(commands) == 11  # 5 of Ada's emails, 6 of Bob's
    nc = await nats.connect(url)
    try:
        keys = await nc.jetstream().key_value(personal.KEYS_BUCKET)
        with pytest.raises(KeyNotFoundError):
            await keys.get(personal.subject_ref(ada.id))
        bob_key = (await keys.get(personal.subject_ref(bob.id))).value
    finally:
        await nc.close()
    assert bob_key
    readable = []
    for envelope in commands:
        data = dict(envelope.data)
        try:
            personal.open_data(data, personal.personal_fields(SendEmailV1),
                               envelope.metadata.id,
                               {personal.subject_ref(bob.id): bob_key})
        except personal.Forgotten:
            continue
        readable.append(data["to"])
    assert readable == [bob.email] * 6


async def _letters(pizza: Pizza, address: str, count: int) -> bool:
    return len(await pizza.mailbox(address)) >= count
