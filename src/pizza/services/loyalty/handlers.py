"""Points for completed orders: one per whole pound, once per order (wired in
``create``, with the service's SaaS connection when it uses the SaaS)."""

from __future__ import annotations

from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Context, Reject
from pizza.services.loyalty import ledger
from pizza.services.loyalty.saas_adapter import LoyaltyRefused, SaasConnection


async def add_points(event: OrderCompletedV1, ctx: Context, *,
                     saas: SaasConnection | None) -> None:
    points = ledger.points_for(event.order_value)
    if points == 0:
        return  # an order under a pound earns nothing, and nothing is announced
    if not await ledger.record(ctx.db, event.order_id, event.customer_id, points):
        return  # this order was credited before: a redelivery past the inbox
    if saas is not None:
        try:
            balance = await saas.current().credit(event.customer_id, event.order_id, points)
        except LoyaltyRefused as refused:
            raise Reject(f"the loyalty SaaS refused the credit: {refused}") from refused
        # LoyaltyUnavailable propagates: the entry rolls back and the kernel retries.
    else:
        balance = await ledger.add(ctx.db, event.customer_id, points)
    ctx.publish(LoyaltyPointsAddedV1(customer_id=event.customer_id, order_id=event.order_id,
                                     points=points, balance=balance))
