"""Forgetting a customer: an operator erases what the system keeps about a person.

``POST /api/admin/customers/{customerId}/forget`` (and ``pizza customers forget ID``). In
one transaction orders blanks what it holds about the customer: the email address of
each of their orders, the request fingerprint made from it, and the details of their
emails' answers. It publishes ``CustomerForgotten`` (only the id) with the erasure of
the customer's key: the relay purges the key when it reaches the event, after every
message sealed with it before (personal.py), so the receipts and thank-you notes on the
streams, in dead letters and in backups become unreadable at once. Every other service
erases its own copies when the event arrives (delivery its addresses, notifications its
outgoing emails and the mailbox's letters).

What stays is not personal: the customer id (a pseudonym the customer chose, which keeps
loyalty points and order history consistent), orders, their values and statuses.

Like an order, forgetting never waits for the bus: the event waits in the outbox while
the broker is away. Forgetting again is harmless (nothing left to blank; the key is
purged again). An order the customer places later is a new relationship: it is kept,
and sealed with a new key.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy import select, update

from pizza.contracts.orders import CustomerForgottenV1
from pizza.eventing import ServiceHost
from pizza.eventing.service import route_causes
from pizza.services.orders.emails import FORGOTTEN
from pizza.services.orders.tables import order_emails, orders
from pizza.services.running import running_host

log = logging.getLogger("pizza.services.orders")

router: APIRouter = APIRouter(tags=["admin"])

CustomerId = Annotated[str, Path(alias="customerId", min_length=1, max_length=100)]
Host = Annotated[ServiceHost, running_host("orders")]


async def forget(host: ServiceHost, customer_id: str) -> int:
    """Erase the customer's personal data here and announce it; how many orders held it."""
    async with host.unit_of_work() as ctx:
        theirs = select(orders.c.id).where(orders.c.customer_id == customer_id)
        await ctx.db.execute(
            update(order_emails)
            .where(order_emails.c.order_id.in_(theirs.scalar_subquery()))
            .values(detail=None))
        blanked = await ctx.db.execute(
            update(orders).where(orders.c.customer_id == customer_id)
            .values(email=FORGOTTEN, request_hash=""))
        ctx.publish(CustomerForgottenV1(customer_id=customer_id), erases=customer_id)
    count = int(blanked.rowcount or 0)
    log.info("a customer was forgotten (%d order(s) held their email)", count)
    return count


@router.post("/api/admin/customers/{customerId}/forget", status_code=202,
             openapi_extra=route_causes(CustomerForgottenV1),
             responses={422: {"description": "not a customer id"}})
async def forget_customer(customer_id: CustomerId, host: Host) -> dict[str, Any]:
    """Erase a customer's personal data everywhere (operators only).

    Answers at once: orders has blanked its own copy, and CustomerForgotten is on its
    way to the other services; their key is purged as it goes out, so what the streams
    hold about them can no longer be read.
    """
    orders_touched = await forget(host, customer_id)
    return {"customerId": customer_id, "status": "forgotten", "orders": orders_touched}
