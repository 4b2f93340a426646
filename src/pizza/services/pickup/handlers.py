"""What the pickup counter does when the kitchen finishes an order or it is cancelled
(wired in ``create``)."""

from __future__ import annotations

from collections.abc import Callable

from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.eventing import Context
from pizza.services.pickup import shelf


async def put_on_shelf(event: OrderPreparedV1, ctx: Context,
                       wake_staff: Callable[[], None]) -> None:
    """A prepared pickup order waits at the counter (delivery orders are ignored)."""
    if await shelf.put_out(ctx, event):
        ctx.on_commit(wake_staff)  # the simulated staff look now


async def take_off_shelf(event: OrderCancelledV1, ctx: Context) -> None:
    """Nobody collects a cancelled order, even if it was not prepared yet."""
    await shelf.withdraw(ctx, event.order_id)
