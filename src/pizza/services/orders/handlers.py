"""What orders does when other services report progress (wired in ``create``).

Each subscription is its own queue, so messages may come late or out of order (an
OrderDelivered before the OrderPrepared it follows). Status therefore moves forward only,
through conditional UPDATEs: a repeated or late message finds nothing to change and has
no effect, which also makes OrderCompleted and the thank-you email happen exactly once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import bindparam, case, func, select, update

from pizza.contracts.delivery import DeliveryAddressRegisteredV1, OrderDeliveredV1
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.notifications import EmailFailedV1, EmailSentV1
from pizza.contracts.orders import OrderCompletedV1
from pizza.contracts.pickup import OrderCollectedV1
from pizza.eventing import Context
from pizza.services.orders import awaiting, delivery_addresses, emails, menu
from pizza.services.orders.running import OrdersService
from pizza.services.orders.tables import orders

log = logging.getLogger("pizza.services.orders")


# A waiting order is confirmed (or cancelled: another customer's id) once its id is known.
async def learn_delivery_address(event: DeliveryAddressRegisteredV1, ctx: Context, *,
                                 service: OrdersService) -> None:
    """Remember an issued delivery id (from the start of the stream: ids issued before
    this service first ran are valid too), and settle the orders that waited for it."""
    await delivery_addresses.remember(ctx, event.delivery_id, event.customer_id)
    await awaiting.address_known(service, ctx, event.delivery_id, event.customer_id)


async def note_prepared(event: OrderPreparedV1, ctx: Context) -> None:
    """From now on the order cannot be cancelled."""
    result = await ctx.db.execute(_PREPARED, {"order_id": event.order_id,
                                              "now": datetime.now(UTC)})
    if not result.rowcount:
        log.warning("OrderPrepared for unknown order %s ignored", event.order_id)


_PREPARED = (update(orders).where(orders.c.id == bindparam("order_id"))
             .values(prepared_at=func.coalesce(orders.c.prepared_at,
                                               bindparam("now", type_=orders.c.prepared_at.type)),
                     status=case((orders.c.status == "confirmed", "prepared"),
                                 else_=orders.c.status)))


async def complete_delivered(event: OrderDeliveredV1, ctx: Context, *,
                             service: OrdersService) -> None:
    await complete(service, ctx, event.order_id)


async def complete_collected(event: OrderCollectedV1, ctx: Context, *,
                             service: OrdersService) -> None:
    await complete(service, ctx, event.order_id)


async def complete(service: OrdersService, ctx: Context, order_id: str) -> None:
    """Mark the order completed, once: OrderCompleted and the thank-you email follow.

    Delivered before prepared is accepted (queues are not ordered with each other). A
    cancelled order is not completed: the cancellation was already announced, and orders
    is the authority (see ``cancelling.py``).
    """
    changed = await ctx.db.execute(_COMPLETE, {"order_id": order_id,
                                               "completed_at": datetime.now(UTC)})
    if not changed.rowcount:
        log.info("order %s not completed again (unknown, done or cancelled)", order_id)
        return
    order = (await ctx.db.execute(_COMPLETED, {"order_id": order_id})).one()
    ctx.publish(OrderCompletedV1(order_id=order_id, customer_id=order.customer_id,
                                 order_value=menu.pounds(order.value_pence),
                                 fulfilment=order.fulfilment))
    if order.email != emails.FORGOTTEN:
        await emails.send(ctx, order_id, "thanks",
                          emails.thanks(order_id, order.email, order.value_pence,
                                        order.fulfilment, sender=service.settings.mail_from),
                          order.customer_id)


_COMPLETE = (update(orders)
             .where(orders.c.id == bindparam("order_id"),
                    orders.c.status.in_(("confirmed", "prepared")))
             .values(status="completed"))  # and completed_at, a parameter
_COMPLETED = select(orders.c.customer_id, orders.c.email, orders.c.value_pence,
                    orders.c.fulfilment).where(orders.c.id == bindparam("order_id"))


async def email_sent(answer: EmailSentV1, ctx: Context) -> None:
    if not await emails.record_answer(ctx, "sent", answer.message_id):
        log.info("EmailSent for a command orders does not know (or already sent)")


async def email_failed(answer: EmailFailedV1, ctx: Context) -> None:
    if not await emails.record_answer(ctx, "failed", answer.reason):
        log.info("EmailFailed for a command orders does not know (or already sent)")
    else:
        log.warning("an order email failed: %s", answer.reason[:200])
