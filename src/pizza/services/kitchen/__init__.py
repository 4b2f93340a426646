"""The kitchen: turns confirmed orders into tickets, cooks them, and says when they are
ready (OrderPreparing, OrderPrepared)."""

from __future__ import annotations

from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.eventing import Service
from pizza.services.kitchen.tables import metadata

service = Service(
    "kitchen", tables=metadata,
    description="Tickets for confirmed orders; cooks them and announces when they are ready.",
)
service.declare_publishes(OrderPreparingV1, OrderPreparedV1)

# Registered on import: the handlers, the routes and the simulated staff.
from pizza.services.kitchen import api, handlers, simulation  # noqa: E402

service.router = api.router

__all__ = ["handlers", "service", "simulation"]
