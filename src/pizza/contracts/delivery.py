"""Events published by the delivery service."""

from __future__ import annotations

from pizza.contracts.bounds import CustomerId, DeliveryId, OrderId, PersonName
from pizza.eventing import Event, event


@event("DeliveryAddressRegistered", version=1, source="delivery",
       description="A customer registered a delivery address; orders may now name its id.")
class DeliveryAddressRegisteredV1(Event):
    delivery_id: DeliveryId
    customer_id: CustomerId


@event("OrderOutForDelivery", version=1, source="delivery",
       description="A driver left with the order.")
class OrderOutForDeliveryV1(Event):
    order_id: OrderId
    driver: PersonName


@event("OrderDelivered", version=1, source="delivery",
       description="The driver handed the order to the customer.")
class OrderDeliveredV1(Event):
    order_id: OrderId
