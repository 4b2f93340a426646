"""``GET /api/catalog`` and ``GET /asyncapi.json``: what flows on the bus, from the code.

Every process answers with the whole system, whichever services it runs (``pizza serve
kitchen`` too): the services it does not run are made by their factories, once, for their
declarations; that starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from pizza.eventing import Service, registry, settings, usage
from pizza.eventing.asyncapi import asyncapi
from pizza.eventing.governance import catalog
from pizza.web import storming

TITLE = "Plant-Based Pizza"
VERSION = "0.1.0"


def every_service(running: Sequence[Service]) -> list[Service]:
    """The running services first, then every other service the system declares."""
    from pizza.app import load  # the composition root imports this module

    names = {service.name for service in running}
    return [*running, *(service for service in load() if service.name not in names)]


LIVE_SECONDS = 2.0


async def live_consumers(running: Sequence[Service]) -> dict[tuple[str, int], set[str]] | None:
    """Who consumes what, by the declarations every service announces on the broker when
    it starts (eventing/usage.py: other processes and machines too), read through a
    service running here; None if none runs here or the broker does not answer."""
    host = next((service.host for service in running if service.host is not None), None)
    if host is None:
        return None
    with contextlib.suppress(Exception):
        found: dict[tuple[str, int], set[str]] = {}
        async with asyncio.timeout(LIVE_SECONDS):
            for declared in await usage.declarations(host.transport):
                for key in declared.consumes:
                    found.setdefault(key, set()).add(declared.service)
        return found
    return None


def router(services: Sequence[Service]) -> APIRouter:
    routes = APIRouter(tags=["catalog"])

    @functools.cache
    def declared() -> list[Service]:  # made once, at first use: the declarations stay
        return every_service(services)

    @routes.get("/api/catalog")
    async def event_catalog() -> list[dict[str, Any]]:
        """Every event and command type and version: subject, JSON Schema, producer,
        consumers (declared by the code, and ``liveConsumers``: those the running system's
        services announced on the broker, or null if it cannot be asked), deprecation and
        sunset date."""
        entries = catalog(registry, declared())
        live = await live_consumers(services)
        for entry in entries:
            entry["liveConsumers"] = (None if live is None else
                                      sorted(live.get((entry["type"], entry["version"]), ())))
        return entries

    @functools.cache
    def board() -> dict[str, Any]:  # the declarations do not change while it runs
        return storming.board(declared())

    @routes.get("/api/catalog/storming")
    def event_storming() -> dict[str, Any]:
        """The event-storming board, drawn from the services' declarations: per command
        route, its actor, the service taking it, the events it causes, the policies that
        react, what they cause, the read models they feed and the queries reading them."""
        return board()  # a plain def: the first, slow, drawing runs off the event loop

    @routes.get("/asyncapi.json")
    async def asyncapi_document() -> dict[str, Any]:
        """The AsyncAPI 3.0 document of every channel, message and operation, and the
        NATS servers in use (PIZZA_NATS_URL, else the embedded broker's)."""
        return asyncapi(registry, declared(), TITLE, VERSION,
                        settings.broker_url())

    return routes
