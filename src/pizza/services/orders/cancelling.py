"""Cancelling an order, and the rule that makes every order end in one agreed state.

**Orders is the authority on whether an order is cancelled.** The customer may cancel
until orders has learnt that the kitchen finished the order (OrderPrepared); orders also
cancels an order whose delivery id never became known (``awaiting.py``). The change is one
conditional UPDATE (``WHERE status IN (...)``), so a cancel racing an OrderPrepared, a
second cancel or a second orders process cannot both win: at most one OrderCancelled,
and the order is then never completed (``handlers.complete`` only completes a confirmed
or prepared order). The customer is emailed what happened (SendEmail, kind
``cancelled``) in the same transaction.

The race this settles: orders accepts ``POST /cancel`` because it has not seen
OrderPrepared yet, while the kitchen is publishing OrderPrepared. Both events are then
on the bus, and each subscriber's queue may get them in either order. Once OrderCancelled
is published, the order is cancelled, everywhere:

* kitchen, delivery and pickup withdraw the order whatever they have done with it so far
  (a prepared ticket, a job awaiting a driver or on the road, an order on the shelf), and
  if OrderCancelled comes first they keep a tombstone, so a late OrderPrepared opens
  nothing;
* tracking shows ``cancelled`` whatever step it had reached, except ``completed`` (which
  orders never announces for a cancelled order), and the order's stream ends there;
* orders ignores a later OrderPrepared, OrderDelivered or OrderCollected for it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select, update

from pizza.contracts.orders import OrderCancelledV1
from pizza.eventing import Context
from pizza.eventing.errors import Conflict, NotFound
from pizza.services.orders import emails
from pizza.services.orders.running import OrdersService
from pizza.services.orders.tables import orders

log = logging.getLogger("pizza.services.orders")

REASON = "cancelled by customer"
# Statuses a customer may still cancel from: nothing has been cooked for them yet.
CANCELLABLE = ("confirmed", "awaiting-address")

Outcome = Literal["cancelled", "already-cancelled"]


async def cancel_in(service: OrdersService, ctx: Context, order_id: str, reason: str,
                    allowed: tuple[str, ...] = CANCELLABLE) -> bool:
    """Cancel the order if its status is one of ``allowed``: announce it and email the
    customer, in ``ctx``'s transaction. False if it was not in such a status."""
    changed = (await ctx.db.execute(
        update(orders)
        .where(orders.c.id == order_id, orders.c.status.in_(allowed))
        .values(status="cancelled", cancelled_at=datetime.now(UTC))
        .returning(orders.c.email, orders.c.customer_id))).first()
    if changed is None:
        return False
    ctx.publish(OrderCancelledV1(order_id=order_id, reason=reason), correlation_id=order_id)
    if changed.email != emails.FORGOTTEN:
        await emails.send(ctx, order_id, "cancelled",
                          emails.cancelled(order_id, changed.email, reason,
                                           sender=service.settings.mail_from),
                          changed.customer_id)
    log.info("order %s cancelled: %s", order_id, reason)
    return True


async def cancel(service: OrdersService, order_id: str) -> Outcome:
    """The customer cancels: done, or already was; NotFound or Conflict otherwise."""
    async with service.unit_of_work(correlation_id=order_id) as ctx:
        if await cancel_in(service, ctx, order_id, REASON):
            return "cancelled"
        status = (await ctx.db.execute(
            select(orders.c.status).where(orders.c.id == order_id))).scalar()
    if status is None:
        raise NotFound("no such order", {"orderId": order_id})
    if status == "cancelled":
        return "already-cancelled"
    raise Conflict("the kitchen has already prepared this order; it can no longer be cancelled",
                   {"orderId": order_id, "status": status}, code="already-prepared")
