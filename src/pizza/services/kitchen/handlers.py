"""What the kitchen does when orders are confirmed or cancelled (wired in ``create``)."""

from __future__ import annotations

from collections.abc import Callable

from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1
from pizza.eventing import Context
from pizza.services.kitchen import tickets


async def open_ticket(event: OrderConfirmedV1, ctx: Context,
                      wake_staff: Callable[[], None]) -> None:
    """A confirmed order becomes a ticket, once, however often the event arrives."""
    if await tickets.open_ticket(ctx, event):
        ctx.on_commit(wake_staff)  # the simulated staff look now


async def withdraw_ticket(event: OrderCancelledV1, ctx: Context) -> None:
    """Drop a cancelled order, even one already prepared (orders is the authority) or one
    whose confirmation has not arrived yet."""
    await tickets.withdraw(ctx, event.order_id)
