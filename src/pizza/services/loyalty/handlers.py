"""Points for completed orders: one per whole pound, once per order."""

from __future__ import annotations

from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Backoff, Context, Reject
from pizza.services.loyalty import ledger, service
from pizza.services.loyalty.saas_adapter import LoyaltyRefused, saas, using_saas


# A small intake and a long, patient retry: with the SaaS backend each message is an HTTP
# call to someone else, who may rate limit us or be down for minutes. Ten attempts with
# backoff up to two minutes ride out about six minutes of outage before a dead letter.
@service.handles(OrderCompletedV1, max_in_flight=4, max_attempts=10,
                 backoff=Backoff(initial=1.0, factor=2.0, maximum=120.0),
                 causes=(LoyaltyPointsAddedV1,))
async def add_points(event: OrderCompletedV1, ctx: Context) -> None:
    points = ledger.points_for(event.order_value)
    if points == 0:
        return  # an order under a pound earns nothing, and nothing is announced
    if not await ledger.record(ctx.db, event.order_id, event.customer_id, points):
        return  # this order was credited before: a redelivery past the inbox
    if using_saas():
        try:
            balance = await saas().credit(event.customer_id, event.order_id, points)
        except LoyaltyRefused as refused:
            raise Reject(f"the loyalty SaaS refused the credit: {refused}") from refused
        # LoyaltyUnavailable propagates: the entry rolls back and the kernel retries.
    else:
        balance = await ledger.add(ctx.db, event.customer_id, points)
    ctx.publish(LoyaltyPointsAddedV1(customer_id=event.customer_id, order_id=event.order_id,
                                     points=points, balance=balance))
