"""What every public app of the system shares: its title, error shape, access gate and the
routes that belong to no single service (the catalog, the issuer's keys, the web app).

Both the single-process app (``app.create_app``) and the gateway in front of one process
per service (``gateway.create_gateway``) are made from these, so they answer alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from pizza import config
from pizza.eventing import Service
from pizza.web import access, accounts, errors, identity, site
from pizza.web import catalog as catalog_routes


def new_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    app = FastAPI(
        title="Plant-Based Pizza",
        description="An event-driven pizza company: thin synchronous commands, "
        "everything else through events on NATS JetStream.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from the package by web/site.py (works offline)
    )
    errors.install(app)
    return app


def guard(app: FastAPI) -> None:
    """Tokens, roles, JSON-only writes, CORS and the rate limit, as configured."""
    current = config.settings()
    access.install(app, identity.verifier(), rate_limit=current.rate_limit,
                   cors_origins=current.cors_origins)


def add_public_routes(app: FastAPI, services: Sequence[Service]) -> None:
    app.include_router(catalog_routes.router(services))

    if not config.settings().oidc_issuer:
        issuer = identity.local_issuer()

        @app.get("/.well-known/jwks.json", tags=["system"])
        async def jwks() -> dict[str, Any]:
            """The public key of this system's own token issuer (JSON Web Key Set)."""
            return issuer.jwks()

        accounts.add_routes(app, issuer)  # customers sign up and in with our issuer

    @app.get("/api/session", tags=["system"])
    async def session(caller: access.CurrentCaller) -> dict[str, Any]:
        """Who the bearer token belongs to: what the web app shows and lets them do."""
        return {"subject": caller.subject, "roles": sorted(caller.roles),
                "customerId": caller.customer_id}

    site.install(app)
