"""Events published by the delivery service."""

from __future__ import annotations

from pizza.eventing import Event, event


@event("DeliveryAddressRegistered", version=1, source="delivery",
       description="A customer registered a delivery address; orders may now name its id.")
class DeliveryAddressRegisteredV1(Event):
    delivery_id: str
    customer_id: str


@event("OrderOutForDelivery", version=1, source="delivery",
       description="A driver left with the order.")
class OrderOutForDeliveryV1(Event):
    order_id: str
    driver: str


@event("OrderDelivered", version=1, source="delivery",
       description="The driver handed the order to the customer.")
class OrderDeliveredV1(Event):
    order_id: str
