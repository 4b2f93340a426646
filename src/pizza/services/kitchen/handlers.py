"""What the kitchen does when orders are confirmed or cancelled."""

from __future__ import annotations

from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1
from pizza.eventing import Context
from pizza.services.kitchen import service, simulation, tickets


# The kitchen's own intake limit: no more confirmed orders in flight than it can take.
@service.handles(OrderConfirmedV1, max_in_flight=20)
async def open_ticket(event: OrderConfirmedV1, ctx: Context) -> None:
    """A confirmed order becomes a ticket, once, however often the event arrives."""
    if await tickets.open_ticket(ctx, event):
        ctx.on_commit(simulation.wake)


@service.handles(OrderCancelledV1)
async def withdraw_ticket(event: OrderCancelledV1, ctx: Context) -> None:
    """Drop a cancelled order, even one already prepared (orders is the authority) or one
    whose confirmation has not arrived yet."""
    await tickets.withdraw(ctx, event.order_id)
