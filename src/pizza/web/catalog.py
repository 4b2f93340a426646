"""``GET /api/catalog`` and ``GET /asyncapi.json``: what flows on the bus, from the code.

Every process answers with the whole system, whichever services it runs (``pizza serve
kitchen`` too): the declarations of all services are imported, which starts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from pizza.eventing import Service, registry, settings
from pizza.eventing.asyncapi import asyncapi
from pizza.eventing.governance import catalog

TITLE = "Plant-Based Pizza"
VERSION = "0.1.0"


def every_service(running: Sequence[Service]) -> list[Service]:
    """The running services first, then every other service the system declares."""
    from pizza.app import load  # the composition root imports this module

    names = {service.name for service in running}
    return [*running, *(service for service in load() if service.name not in names)]


def router(services: Sequence[Service]) -> APIRouter:
    routes = APIRouter(tags=["catalog"])

    @routes.get("/api/catalog")
    async def event_catalog() -> list[dict[str, Any]]:
        """Every event and command type and version: subject, JSON Schema, producer,
        consumers, deprecation and sunset date."""
        return catalog(registry, every_service(services))

    @routes.get("/asyncapi.json")
    async def asyncapi_document() -> dict[str, Any]:
        """The AsyncAPI 3.0 document of every channel, message and operation, and the
        NATS servers in use (PIZZA_NATS_URL, else the embedded broker's)."""
        return asyncapi(registry, every_service(services), TITLE, VERSION,
                        settings.broker_url())

    return routes
