"""Subscriptions that fold each order's events into its read model.

Every event type is a durable queue of its own, so they arrive in any order; the fold in
projection.py is what makes that harmless. All queues start at the beginning of their
streams (``start="all"``): a fresh read model is built from the whole history. ``create``
wires them, each with the service's read model.
"""

from __future__ import annotations

import re
from typing import Any

from pizza.contracts.delivery import OrderDeliveredV1, OrderOutForDeliveryV1
from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import (
    OrderCancelledV1,
    OrderCompletedV1,
    OrderConfirmedV1,
    OrderConfirmedV2,
)
from pizza.contracts.pickup import OrderCollectedV1, OrderReadyForCollectionV1
from pizza.eventing import Context, Event
from pizza.services.tracking import projection
from pizza.services.tracking.readmodel import ReadModels

# The version of OrderConfirmed the read model is built from. Moving to v2 is this one
# line: projection.confirmed_fields reads both shapes, and the queue name carries the
# version, so a v2 queue starts afresh from the beginning of its stream.
ORDER_CONFIRMED: type[OrderConfirmedV1] | type[OrderConfirmedV2] = OrderConfirmedV2

QUEUE: dict[str, Any] = {"max_in_flight": 256, "start": "all"}

# Events that only move an order along: their type and time are all the read model needs.
STEPS: tuple[type[Event], ...] = (
    OrderCancelledV1,
    OrderPreparingV1,
    OrderPreparedV1,
    OrderOutForDeliveryV1,
    OrderDeliveredV1,
    OrderReadyForCollectionV1,
    OrderCollectedV1,
    OrderCompletedV1,
)


def queue_name(message: type[Event]) -> str:
    """OrderOutForDelivery -> order-out-for-delivery."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", message.info.type).lower()


async def record(ctx: Context, read_models: ReadModels, order_id: str, **fields: Any) -> None:
    """Fold the event being handled into its order's document."""
    if ctx.cause is None:
        raise RuntimeError("record() is for a handler of an event")
    fact = projection.Fact(order_id=order_id, type=ctx.cause.type, time=ctx.cause.time,
                           fields=fields)
    model = read_models.current()
    # Folded with the batch's other events of this order before the commit; the hub
    # rings after it, so a stream that reads then sees the change.
    await model.store.stage(ctx, order_id, lambda view: projection.apply(view, fact),
                            model.hub.notify)


async def order_confirmed(event: OrderConfirmedV1 | OrderConfirmedV2, ctx: Context, *,
                          read_models: ReadModels) -> None:
    await record(ctx, read_models, event.order_id, **projection.confirmed_fields(event))


async def loyalty_points_added(event: LoyaltyPointsAddedV1, ctx: Context, *,
                               read_models: ReadModels) -> None:
    await record(ctx, read_models, event.order_id, loyalty_points=event.points)


async def order_moved_on(event: Any, ctx: Context, *, read_models: ReadModels) -> None:
    """Any of STEPS: each carries the order id; its type says how far the order got."""
    await record(ctx, read_models, event.order_id)
