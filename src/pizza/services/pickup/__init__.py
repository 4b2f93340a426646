"""The pickup counter: prepared pickup orders wait here until the customer collects
them (OrderReadyForCollection, OrderCollected).

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

import functools

from pizza.config import Settings
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import OrderCancelledV1
from pizza.contracts.pickup import OrderCollectedV1, OrderReadyForCollectionV1
from pizza.eventing import Service
from pizza.eventing.service import inject
from pizza.services import staff_rest
from pizza.services.pickup import api, handlers, simulation
from pizza.services.pickup.tables import metadata


def create(settings: Settings) -> Service:
    """The counter: its handlers, route and (``settings.simulate``) simulated counter."""
    service = Service(
        "pickup", tables=metadata,
        description="The counter where prepared pickup orders wait to be collected.",
    )
    service.declare_publishes(OrderReadyForCollectionV1, OrderCollectedV1)
    service.handles(OrderPreparedV1, causes=(OrderReadyForCollectionV1,))(
        inject(handlers.put_on_shelf,
               wake_staff=functools.partial(service.wake, simulation.STAFF)))
    service.handles(OrderCancelledV1)(handlers.take_off_shelf)
    service.router = api.router
    if settings.simulate:  # the customer's trip takes as long as a driver's
        service.runs(simulation.STAFF, idle_seconds=staff_rest.SAFETY_POLL_SECONDS)(
            functools.partial(simulation.counter_round, service, settings.drive_seconds))
    return service


__all__ = ["create"]
