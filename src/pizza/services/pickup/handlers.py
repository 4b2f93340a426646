"""What the pickup counter does when the kitchen finishes an order or it is cancelled."""

from __future__ import annotations

from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.contracts.pickup import OrderReadyForCollectionV1
from pizza.eventing import Context
from pizza.services.pickup import service, shelf, simulation


@service.handles(OrderPreparedV1, causes=(OrderReadyForCollectionV1,))
async def put_on_shelf(event: OrderPreparedV1, ctx: Context) -> None:
    """A prepared pickup order waits at the counter (delivery orders are ignored)."""
    if await shelf.put_out(ctx, event):
        ctx.on_commit(simulation.wake)


@service.handles(OrderCancelledV1)
async def take_off_shelf(event: OrderCancelledV1, ctx: Context) -> None:
    """Nobody collects a cancelled order, even if it was not prepared yet."""
    await shelf.withdraw(ctx, event.order_id)
