"""Which delivery ids the delivery service has issued, as orders learns them from events.

Orders never asks delivery (no calls between services): it keeps its own copy, filled by
DeliveryAddressRegistered. That copy is eventually consistent, so a customer who
registers an address and orders at once may be a step ahead of the event; placing an
order therefore waits a little for an id it does not know yet before refusing it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from sqlalchemy import select

from pizza.eventing import Context
from pizza.services.orders import service
from pizza.services.orders.tables import insert_if_absent, known_delivery_addresses

# How long an order waits for an unknown delivery id to arrive, and how often it looks.
WAIT_SECONDS = 2.0
POLL_SECONDS = 0.05

Verdict = Literal["ok", "unknown", "not-yours"]


async def remember(ctx: Context, delivery_id: str, customer_id: str) -> None:
    """Store an issued id (a redelivered event changes nothing)."""
    await insert_if_absent(ctx.db, known_delivery_addresses,
                           {"delivery_id": delivery_id, "customer_id": customer_id},
                           ["delivery_id"])


async def owner_of(delivery_id: str) -> str | None:
    async with service.read() as conn:
        return (await conn.execute(
            select(known_delivery_addresses.c.customer_id)
            .where(known_delivery_addresses.c.delivery_id == delivery_id))).scalar()


async def check(delivery_id: str, customer_id: str, wait: float | None = None) -> Verdict:
    """Whether the id was issued to this customer, waiting up to ``wait`` seconds
    (default WAIT_SECONDS, read at call time) for it to become known."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (WAIT_SECONDS if wait is None else wait)
    while True:
        owner = await owner_of(delivery_id)
        if owner is not None:
            return "ok" if owner == customer_id else "not-yours"
        if loop.time() >= deadline:
            return "unknown"
        await asyncio.sleep(POLL_SECONDS)
