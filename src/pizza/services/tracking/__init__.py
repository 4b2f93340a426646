"""Tracking: the query side (CQRS read model) of every order.

It folds the events of each order's story (OrderConfirmed, the kitchen's, delivery's
and pickup's steps, OrderCompleted, LoyaltyPointsAdded) into one JSON document per order,
kept in its own table or, with ``PIZZA_REDIS_URL``, in Redis. It answers
``GET /api/orders/{orderId}`` and streams changes on ``.../stream``. It publishes nothing.
Its journal (journal.py) keeps the metadata of every message on the bus for the
operator's /events page (``GET /api/events``, ``.../stream``, ``.../story/{orderId}``).

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

from pizza.config import Settings
from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.eventing.service import inject
from pizza.services.tracking import api, handlers, journal
from pizza.services.tracking.readmodel import ReadModels
from pizza.services.tracking.running import TrackingService


def create(settings: Settings) -> TrackingService:
    """Tracking, its read model in Redis at ``settings.redis_url`` if set."""
    read_models = ReadModels(settings.redis_url)
    service = TrackingService(read_models)
    confirmed = handlers.ORDER_CONFIRMED
    service.handles(confirmed, name=f"order-confirmed-v{confirmed.info.version}",
                    **handlers.QUEUE)(
        inject(handlers.order_confirmed, read_models=read_models))
    service.handles(LoyaltyPointsAddedV1, name=handlers.queue_name(LoyaltyPointsAddedV1),
                    **handlers.QUEUE)(
        inject(handlers.loyalty_points_added, read_models=read_models))
    moved_on = inject(handlers.order_moved_on, read_models=read_models)
    for step in handlers.STEPS:
        service.handles(step, name=handlers.queue_name(step), **handlers.QUEUE)(moved_on)
    service.router = api.router
    service.taps.update(journal.TAPS)
    service.on_start.append(read_models.start)
    service.on_start.append(service.journals.start)
    service.on_stop.append(service.journals.stop)
    service.on_stop.append(read_models.stop)
    service.on_replay.append(read_models.clear)
    return service


__all__ = ["TrackingService", "create"]
