"""Tracking: the query side (CQRS read model) of every order.

It folds the events of each order's story (OrderConfirmed, the kitchen's, delivery's
and pickup's steps, OrderCompleted, LoyaltyPointsAdded) into one JSON document per order,
kept in its own table or, with ``PIZZA_REDIS_URL``, in Redis. It answers
``GET /api/orders/{orderId}`` and streams changes on ``.../stream``. It publishes nothing.
Its journal (journal.py) keeps the metadata of every message on the bus for the
operator's /events page (``GET /api/events``, ``.../stream``, ``.../story/{orderId}``).
"""

from __future__ import annotations

from pizza.eventing import Service
from pizza.services.tracking.tables import metadata

service = Service(
    "tracking",
    tables=metadata,
    description="The query side (CQRS): each order's read model, folded from the events "
                "of its story, served over HTTP and as a live Server-Sent Events stream.",
)

# Registered on import: the handlers and the routes; the store opens at start.
from pizza.services.tracking import api, handlers, journal, readmodel  # noqa: E402

service.router = api.router
service.taps.update(journal.TAPS)
service.on_start.append(readmodel.start)
service.on_start.append(journal.start)
service.on_stop.append(journal.stop)
service.on_stop.append(readmodel.stop)
service.on_replay.append(readmodel.clear)

__all__ = ["handlers", "service"]
