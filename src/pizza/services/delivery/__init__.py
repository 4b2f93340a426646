"""Delivery: owns customers' delivery addresses, and takes prepared delivery orders to
the door (OrderOutForDelivery, OrderDelivered)."""

from __future__ import annotations

from pizza.contracts.delivery import (
    DeliveryAddressRegisteredV1,
    OrderDeliveredV1,
    OrderOutForDeliveryV1,
)
from pizza.eventing import Service
from pizza.services.delivery.tables import metadata

service = Service(
    "delivery", tables=metadata,
    description="Delivery addresses, and drivers taking prepared delivery orders out.",
)
service.declare_publishes(DeliveryAddressRegisteredV1, OrderOutForDeliveryV1,
                          OrderDeliveredV1)

# Registered on import: the handlers, the routes and the simulated drivers.
from pizza.services.delivery import api, handlers, simulation  # noqa: E402

service.router = api.router

__all__ = ["handlers", "service", "simulation"]
