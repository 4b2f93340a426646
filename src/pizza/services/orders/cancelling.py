"""Cancelling an order: allowed until orders learns the kitchen has finished it.

The status change is a conditional UPDATE (``WHERE status = 'confirmed'``), so a cancel
racing an OrderPrepared, or a second cancel, cannot both win: exactly one OrderCancelled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select, update

from pizza.contracts.orders import OrderCancelledV1
from pizza.services.orders import service
from pizza.services.orders.tables import orders
from pizza.web.errors import ApiError

log = logging.getLogger("pizza.services.orders")

REASON = "cancelled by customer"

Outcome = Literal["cancelled", "already-cancelled"]


async def cancel(order_id: str) -> Outcome:
    """Cancel the order, or say it already was; ApiError 404 or 409 otherwise."""
    async with service.unit_of_work(correlation_id=order_id) as ctx:
        changed = await ctx.db.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == "confirmed")
            .values(status="cancelled", cancelled_at=datetime.now(UTC)))
        if changed.rowcount:
            ctx.publish(OrderCancelledV1(order_id=order_id, reason=REASON))
            log.info("order %s cancelled", order_id)
            return "cancelled"
        status = (await ctx.db.execute(
            select(orders.c.status).where(orders.c.id == order_id))).scalar()
    if status is None:
        raise ApiError(404, "not-found", f"no order {order_id}")
    if status == "cancelled":
        return "already-cancelled"
    raise ApiError(409, "already-prepared",
                   "the kitchen has already prepared this order; it can no longer be cancelled",
                   {"orderId": order_id, "status": status})
