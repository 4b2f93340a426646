"""The pickup counter: prepared pickup orders wait here until the customer collects
them (OrderReadyForCollection, OrderCollected)."""

from __future__ import annotations

from pizza.contracts.pickup import OrderCollectedV1, OrderReadyForCollectionV1
from pizza.eventing import Service
from pizza.services.pickup.tables import metadata

service = Service(
    "pickup", tables=metadata,
    description="The counter where prepared pickup orders wait to be collected.",
)
service.declare_publishes(OrderReadyForCollectionV1, OrderCollectedV1)

# Registered on import: the handlers, the route and the simulated counter.
from pizza.services.pickup import api, handlers, simulation  # noqa: E402

service.router = api.router

__all__ = ["handlers", "service", "simulation"]
