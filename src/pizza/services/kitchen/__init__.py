"""The kitchen: turns confirmed orders into tickets, cooks them, and says when they are
ready (OrderPreparing, OrderPrepared).

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

import functools

from pizza.config import Settings
from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1
from pizza.eventing import Service
from pizza.eventing.service import inject
from pizza.services import staff_rest
from pizza.services.kitchen import api, handlers, simulation
from pizza.services.kitchen.tables import metadata


def create(settings: Settings) -> Service:
    """The kitchen: its handlers, routes and (``settings.simulate``) simulated staff."""
    service = Service(
        "kitchen", tables=metadata,
        description="Tickets for confirmed orders; cooks them and announces when they are "
                    "ready.",
    )
    service.declare_publishes(OrderPreparingV1, OrderPreparedV1)
    # The kitchen's own intake limit: no more confirmed orders in flight than it can take.
    service.handles(OrderConfirmedV1, max_in_flight=20)(
        inject(handlers.open_ticket, wake_staff=functools.partial(service.wake, simulation.STAFF)))
    service.handles(OrderCancelledV1)(handlers.withdraw_ticket)
    service.router = api.router
    if settings.simulate:
        service.runs(simulation.STAFF, idle_seconds=staff_rest.SAFETY_POLL_SECONDS)(
            functools.partial(simulation.staff_round, service, settings.cook_seconds))
    return service


__all__ = ["create"]
