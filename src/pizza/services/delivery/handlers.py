"""What delivery does when the kitchen finishes an order, an order is cancelled, or a
customer is forgotten (wired in ``create``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import CustomerForgottenV1, OrderCancelledV1
from pizza.eventing import Context
from pizza.services.delivery import addresses, jobs

log = logging.getLogger("pizza.services.delivery")


async def open_job(event: OrderPreparedV1, ctx: Context, wake_staff: Callable[[], None]) -> None:
    """A prepared delivery order waits for a driver (pickup orders are ignored)."""
    if await jobs.open_job(ctx, event):
        ctx.on_commit(wake_staff)  # the simulated staff look now


async def withdraw_job(event: OrderCancelledV1, ctx: Context) -> None:
    """No driver leaves with (or hands over) a cancelled order, even if it was not
    prepared yet."""
    await jobs.withdraw(ctx, event.order_id)


async def forget_customer(event: CustomerForgottenV1, ctx: Context) -> None:
    """An operator erased the customer: their addresses go, with every copy on a job."""
    erased = await addresses.forget(ctx.db, event.customer_id)
    log.info("a customer was forgotten: %d delivery address(es) erased", erased)
