"""Delivery: owns customers' delivery addresses, and takes prepared delivery orders to
the door (OrderOutForDelivery, OrderDelivered).

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

import functools
import itertools

from pizza.config import Settings
from pizza.contracts.delivery import (
    DeliveryAddressRegisteredV1,
    OrderDeliveredV1,
    OrderOutForDeliveryV1,
)
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.orders import CustomerForgottenV1, OrderCancelledV1
from pizza.eventing import Service
from pizza.eventing.service import inject
from pizza.services import staff_rest
from pizza.services.delivery import api, handlers, simulation
from pizza.services.delivery.tables import metadata


def create(settings: Settings) -> Service:
    """Delivery: its handlers, routes and (``settings.simulate``) simulated drivers."""
    service = Service(
        "delivery", tables=metadata,
        description="Delivery addresses, and drivers taking prepared delivery orders out.",
    )
    service.declare_publishes(DeliveryAddressRegisteredV1, OrderOutForDeliveryV1,
                              OrderDeliveredV1)
    service.handles(OrderPreparedV1)(
        inject(handlers.open_job, wake_staff=functools.partial(service.wake, simulation.STAFF)))
    service.handles(OrderCancelledV1)(handlers.withdraw_job)
    service.handles(CustomerForgottenV1)(handlers.forget_customer)
    service.router = api.router
    if settings.simulate:
        service.runs(simulation.STAFF, idle_seconds=staff_rest.SAFETY_POLL_SECONDS)(
            functools.partial(simulation.drivers_round, service, settings.drive_seconds,
                              itertools.cycle(simulation.DRIVERS)))
    return service


__all__ = ["create"]
