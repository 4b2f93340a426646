"""Delivery orders accepted before orders heard of their delivery id, and how each ends.

``POST /api/orders`` never waits for the bus (``placing.py``): a delivery order whose
deliveryId orders has not learnt yet is stored ``awaiting-address`` and answered 202. It
then ends one of three ways, each once (conditional UPDATEs on the status):

* the id's DeliveryAddressRegistered arrives and names the same customer: the order is
  confirmed (OrderConfirmed and the receipt go out then);
* it names another customer: the order is cancelled, as if the id were unknown;
* nothing is heard of the id within PIZZA_DELIVERY_ID_DEADLINE seconds (default 600) of
  the order: it is cancelled (OrderCancelled with the reason, and an email).

The event's handler settles the orders waiting for that id at once. A background job of
the orders service (every process runs it; the conditional UPDATEs make that harmless)
looks every ``CHECK_SECONDS`` for waiting orders whose id is known by now, which also
covers an order stored while its id's event was being handled, and for those past the
deadline.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from pizza.eventing import Context
from pizza.eventing.settings import number
from pizza.services.orders import cancelling, placing
from pizza.services.orders.running import OrdersService
from pizza.services.orders.tables import known_delivery_addresses, orders

log = logging.getLogger("pizza.services.orders")

AWAITING = "awaiting-address"
DEFAULT_DEADLINE = 600.0
CHECK_SECONDS = 0.5  # how often the background job looks when it found nothing to do
BATCH = 100  # orders settled in one transaction
UNKNOWN = "its delivery address is not registered for this customer"


def deadline_seconds() -> float:
    """PIZZA_DELIVERY_ID_DEADLINE, read at each use (default 600 s)."""
    return max(0.0, number("PIZZA_DELIVERY_ID_DEADLINE", DEFAULT_DEADLINE))


def in_story(ctx: Context, order_id: str) -> Context:
    """A context on the same transaction whose messages continue the order's story
    (correlationId = order id) while naming the message being handled as their cause.
    Its messages are collected by ``ctx``."""
    cause = ctx.cause and dataclasses.replace(ctx.cause, correlation_id=order_id)
    return Context(ctx.service, ctx.db, cause=cause, correlation_id=order_id,
                   outgoing=ctx.outgoing, committed=ctx.committed,
                   transaction=ctx.transaction)


async def settle(service: OrdersService, ctx: Context, order_id: str,
                 owner: str | None) -> str | None:
    """Confirm (``owner`` is the order's customer) or cancel (another customer's id) one
    waiting order; what happened, or None if it was no longer waiting."""
    story = in_story(ctx, order_id)
    customer = (await ctx.db.execute(
        select(orders.c.customer_id)
        .where(orders.c.id == order_id, orders.c.status == AWAITING))).scalar()
    if customer is None or owner is None:
        return None
    if owner != customer:
        done = await cancelling.cancel_in(service, story, order_id, UNKNOWN, (AWAITING,))
        return "cancelled" if done else None
    moved = await ctx.db.execute(
        update(orders).where(orders.c.id == order_id, orders.c.status == AWAITING)
        .values(status="confirmed"))
    if not moved.rowcount:
        return None
    await placing.announce(service, story, order_id)
    log.info("order %s confirmed: its delivery id is known now", order_id)
    return "confirmed"


async def address_known(service: OrdersService, ctx: Context, delivery_id: str,
                        owner: str) -> None:
    """DeliveryAddressRegistered: settle the orders waiting for this id."""
    waiting = (await ctx.db.execute(
        select(orders.c.id)
        .where(orders.c.status == AWAITING, orders.c.delivery_id == delivery_id))).scalars()
    for order_id in list(waiting):
        await settle(service, ctx, order_id, owner)


async def settle_due(service: OrdersService, ctx: Context,
                     now: datetime | None = None) -> int:
    """Settle waiting orders whose id is known by now, and cancel those past the
    deadline; how many orders ended waiting."""
    known = (await ctx.db.execute(
        select(orders.c.id, known_delivery_addresses.c.customer_id)
        .join(known_delivery_addresses,
              known_delivery_addresses.c.delivery_id == orders.c.delivery_id)
        .where(orders.c.status == AWAITING)
        .limit(BATCH))).all()
    settled = 0
    for row in known:
        settled += await settle(service, ctx, row.id, row.customer_id) is not None
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=deadline_seconds())
    expired = (await ctx.db.execute(
        select(orders.c.id)
        .where(orders.c.status == AWAITING, orders.c.created_at <= cutoff)
        .order_by(orders.c.created_at)
        .limit(BATCH))).scalars()
    for order_id in list(expired):
        if await cancelling.cancel_in(service, in_story(ctx, order_id), order_id, UNKNOWN,
                                      (AWAITING,)):
            settled += 1
    return settled


async def check_waiting_orders(service: OrdersService) -> bool:
    """The background job (``create`` runs it in a loop): True if it settled any order
    (then it looks again at once)."""
    async with service.read() as conn:
        waiting = (await conn.execute(
            select(orders.c.id).where(orders.c.status == AWAITING).limit(1))).first()
    if waiting is None:
        return False
    async with service.unit_of_work() as ctx:
        return await settle_due(service, ctx) > 0
