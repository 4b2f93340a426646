"""Events published by the pickup counter."""

from __future__ import annotations

from pizza.contracts.bounds import OrderId
from pizza.eventing import Event, event


@event("OrderReadyForCollection", version=1, source="pickup",
       description="A pickup order waits at the counter.")
class OrderReadyForCollectionV1(Event):
    order_id: OrderId


@event("OrderCollected", version=1, source="pickup",
       description="The customer collected the order at the counter.")
class OrderCollectedV1(Event):
    order_id: OrderId
