"""Events published by the kitchen."""

from __future__ import annotations

from typing import Literal

from pizza.contracts.bounds import DeliveryId, OrderId
from pizza.eventing import Event, event


@event("OrderPreparing", version=1, source="kitchen",
       description="The kitchen started cooking an order.")
class OrderPreparingV1(Event):
    order_id: OrderId


@event("OrderPrepared", version=1, source="kitchen",
       description="An order is cooked and boxed, ready for a driver or the counter.")
class OrderPreparedV1(Event):
    order_id: OrderId
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: DeliveryId | None = None
