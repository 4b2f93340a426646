"""What delivery does when the kitchen finishes an order or an order is cancelled."""

from __future__ import annotations

from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.eventing import Context
from pizza.services.delivery import jobs, service


@service.handles(OrderPreparedV1)
async def open_job(event: OrderPreparedV1, ctx: Context) -> None:
    """A prepared delivery order waits for a driver (pickup orders are ignored)."""
    await jobs.open_job(ctx, event)


@service.handles(OrderCancelledV1)
async def withdraw_job(event: OrderCancelledV1, ctx: Context) -> None:
    """No driver leaves with (or hands over) a cancelled order, even if it was not
    prepared yet."""
    await jobs.withdraw(ctx, event.order_id)
