"""Points for completed orders: one per whole pound, once per order (wired in
``create``, with the service's SaaS connection when it uses the SaaS)."""

from __future__ import annotations

from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Context, Reject
from pizza.eventing.envelope import Metadata
from pizza.services.loyalty import ledger
from pizza.services.loyalty.saas_adapter import LoyaltyRefused, SaasConnection


async def credit_at_saas(event: OrderCompletedV1, _meta: Metadata, *,
                         saas: SaasConnection) -> int | None:
    """Before the handler's transaction, with none open: credit the order's points at the
    SaaS and return the customer's balance there (None for an order that earns nothing).

    No database lock waits on their rate limit or their timeouts. A repeat (the process
    died before the commit, a redelivery) credits nothing twice: the order id is the
    credit's idempotency key, and the SaaS answers a repeat with its first answer.
    """
    points = ledger.points_for(event.order_value)
    if points == 0:
        return None
    try:
        return await saas.current().credit(event.customer_id, event.order_id, points)
    except LoyaltyRefused as refused:
        raise Reject(f"the loyalty SaaS refused the credit: {refused}") from refused
    # LoyaltyUnavailable propagates: the message is retried with backoff.


async def add_points(event: OrderCompletedV1, ctx: Context, *, on_saas: bool) -> None:
    """Record the order's entry (once per order) and announce the new balance: from our
    ledger, or the SaaS's balance that ``credit_at_saas`` brought (``ctx.prepared``)."""
    points = ledger.points_for(event.order_value)
    if points == 0:
        return  # an order under a pound earns nothing, and nothing is announced
    if not await ledger.record(ctx.db, event.order_id, event.customer_id, points):
        return  # this order was credited before: a redelivery past the inbox
    balance = int(ctx.prepared) if on_saas else \
        await ledger.add(ctx.db, event.customer_id, points)
    ctx.publish(LoyaltyPointsAddedV1(customer_id=event.customer_id, order_id=event.order_id,
                                     points=points, balance=balance))
