"""Which delivery ids the delivery service has issued, as orders learns them from events.

Orders never asks delivery (no calls between services): it keeps its own copy, filled by
DeliveryAddressRegistered. That copy is eventually consistent, so a customer who
registers an address and orders at once may be a step ahead of the event, and during a
broker outage no event comes at all. Placing an order therefore never waits for it: an
order naming an id not known yet waits in ``awaiting.py`` instead.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select

from pizza.eventing import Context, Service
from pizza.services.orders.tables import insert_if_absent, known_delivery_addresses

Verdict = Literal["ok", "unknown", "not-yours"]


async def remember(ctx: Context, delivery_id: str, customer_id: str) -> None:
    """Store an issued id (a redelivered event changes nothing)."""
    await insert_if_absent(ctx.db, known_delivery_addresses,
                           {"delivery_id": delivery_id, "customer_id": customer_id},
                           ["delivery_id"])


async def owner_of(service: Service, delivery_id: str) -> str | None:
    async with service.read() as conn:
        return (await conn.execute(
            select(known_delivery_addresses.c.customer_id)
            .where(known_delivery_addresses.c.delivery_id == delivery_id))).scalar()


async def check(service: Service, delivery_id: str, customer_id: str) -> Verdict:
    """Whether orders knows the id as issued to this customer (one read, no waiting)."""
    owner = await owner_of(service, delivery_id)
    if owner is None:
        return "unknown"
    return "ok" if owner == customer_id else "not-yours"
