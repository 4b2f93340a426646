"""Events published by the loyalty service."""

from __future__ import annotations

from pizza.contracts.bounds import CustomerId, OrderId, Points
from pizza.eventing import Event, event


@event("LoyaltyPointsAdded", version=1, source="loyalty",
       description="Points were added to a customer's balance for a completed order.")
class LoyaltyPointsAddedV1(Event):
    customer_id: CustomerId
    order_id: OrderId
    points: Points
    balance: Points
