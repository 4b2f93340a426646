"""How a route reaches the running host of its service: a FastAPI dependency.

The app that serves the route runs the service (``app.state.runtime``, set by the
composition root once its services have started), so two apps in one interpreter each
answer from their own host, and no module holds a running service:

    Host = Annotated[ServiceHost, running_host("kitchen")]

    @router.get("/api/kitchen/tickets")
    async def list_tickets(host: Host) -> ...:
        async with host.db.read() as conn: ...
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from fastapi import Depends, Request

from pizza.eventing import Service, ServiceHost
from pizza.eventing.errors import Unavailable

S = TypeVar("S", bound=Service)


def host_in(request: Request, name: str) -> ServiceHost:
    """The host of service ``name`` in the app serving ``request``; Unavailable if it
    does not run there (yet)."""
    runtime = getattr(request.app.state, "runtime", None)
    host = None if runtime is None else runtime.hosts.get(name)
    if host is None:
        raise Unavailable(f"the {name} service is not running")
    return cast(ServiceHost, host)


def running_host(name: str) -> Any:
    """``Depends`` on the running host of service ``name``."""

    async def host(request: Request) -> ServiceHost:  # async: no trip to a thread
        return host_in(request, name)

    return Depends(host)


def running_service(name: str, kind: type[S]) -> Any:
    """``Depends`` on the running service ``name`` itself (what its factory built: its
    settings, its stores), as the ``kind`` its factory made."""

    async def service(request: Request) -> S:  # async: no trip to a thread
        made = host_in(request, name).service
        if not isinstance(made, kind):
            raise TypeError(f"{name} runs as {type(made).__name__}, not {kind.__name__}")
        return made

    return Depends(service)
