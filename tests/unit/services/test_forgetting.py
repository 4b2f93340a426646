"""CustomerForgotten: each service erases its own copy of the customer's personal data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from harness import System, eventually, publish, running
from pizza import config
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.notifications import SendEmailV1
from pizza.contracts.orders import CustomerForgottenV1
from pizza.eventing import Backoff, Service
from pizza.eventing.transport.embedded import free_port
from pizza.services.delivery import create as delivery
from pizza.services.delivery.tables import addresses
from pizza.services.notifications import create as notifications
from pizza.services.notifications import outgoing, sender

ORDER = "3f2b8a1c-6d4e-4f7a-9b2c-1e5d7f9a0b3c"
OTHER_ORDER = "7a1c9e3b-2d4f-4a6b-8c0e-5f7a9b1d3e2c"
REPLIES = "pizza.replies.orders"


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    config.reset()
    monkeypatch.setattr(sender, "BACKOFF", Backoff(initial=0.05, factor=1.0))
    monkeypatch.setattr(sender, "SERVER_BACKOFF", Backoff(initial=0.05, factor=1.0))
    yield
    config.reset()


# -- delivery ----------------------------------------------------------------------------


async def registered(system: System, customer: str, street: str) -> str:
    response = await system.http.post("/api/delivery-addresses", json={
        "customerId": customer, "line1": street, "city": "London", "postcode": "E1 6AN"})
    assert response.status_code == 201, response.text
    return str(response.json()["deliveryId"])


async def test_delivery_forgets_the_addresses_and_the_copies_on_open_jobs(
        tmp_path: Path) -> None:
    async with running([delivery], tmp_path) as system:
        ada = await registered(system, "ada", "1 Ada Lane")
        bob = await registered(system, "bob", "2 Bob Road")
        for order_id, delivery_id in ((ORDER, ada), (OTHER_ORDER, bob)):
            await publish(system, OrderPreparedV1(order_id=order_id, fulfilment="delivery",
                                                  delivery_id=delivery_id))
        jobs = (await system.http.get("/api/delivery/jobs")).text
        assert "1 Ada Lane" in jobs and "2 Bob Road" in jobs

        await publish(system, CustomerForgottenV1(customer_id="ada"))

        jobs = (await system.http.get("/api/delivery/jobs")).json()
        assert {job["orderId"]: job["address"] and job["address"]["line1"]
                for job in jobs} == {ORDER: None, OTHER_ORDER: "2 Bob Road"}
        async with system.service("delivery").read() as conn:
            left = (await conn.execute(select(addresses.c.customer_id))).scalars().all()
        assert left == ["bob"]


# -- notifications -----------------------------------------------------------------------


def orders_stand_in() -> Service:
    """Sends SendEmail as orders does: sealed with the customer's key."""
    return Service("orders")


async def send(producer: Service, customer: str, to: str) -> str:
    async with producer.unit_of_work() as ctx:
        meta = ctx.send(SendEmailV1(to=to, sender="orders@plant-based.pizza",
                                    subject="Your receipt", body=f"Dear {customer}"),
                        personal_data_of=customer)
    return meta.id


@pytest.fixture
async def no_mail_server(tmp_path: Path) -> AsyncIterator[tuple[System, Service]]:
    """Notifications with no SMTP server listening: emails stay pending, retried."""
    config.configure(smtp_host="127.0.0.1", smtp_port=free_port())
    producer = orders_stand_in()
    async with running([producer, notifications], tmp_path) as system:
        yield system, producer


async def test_notifications_answers_a_forgotten_customers_pending_emails_and_deletes_them(
        no_mail_server: tuple[System, Service]) -> None:
    system, producer = no_mail_server
    ada_command = await send(producer, "ada", "ada@example.com")
    await send(producer, "bob", "bob@example.com")
    db = system.runtime.hosts["notifications"].db
    await eventually(lambda: _pending(db, 2), what="both emails recorded")

    await publish(system, CustomerForgottenV1(customer_id="ada"))

    await eventually(lambda: system.published(REPLIES), what="an answer")
    [answer] = system.published(REPLIES)
    assert answer["metadata"]["type"] == "EmailFailed"
    assert answer["metadata"]["causationId"] == ada_command
    assert answer["data"] == {"reason": "recipient forgotten"}
    async with db.read() as conn:
        left = (await conn.execute(select(outgoing.rows.c.to))).scalars().all()
    assert left == ["bob@example.com"]  # Bob's email still waits for the server


async def _pending(db: Any, count: int) -> bool:
    return await outgoing.pending(db) == count


async def test_a_refused_recipient_is_answered_without_quoting_the_address(
        tmp_path: Path) -> None:
    config.configure(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_sink=True)
    producer = orders_stand_in()
    async with running([producer, notifications], tmp_path) as system:
        await send(producer, "eve", "eve.secret@example.invalid")  # the sink answers 550
        await eventually(lambda: system.published(REPLIES), timeout=10, what="an answer")
    [answer] = system.published(REPLIES)
    assert answer["metadata"]["type"] == "EmailFailed"
    assert "550" in answer["data"]["reason"]
    assert "eve.secret" not in answer["data"]["reason"]
