"""Loyalty: one point per whole pound of each completed order (LoyaltyPointsAdded).

Two backends, chosen by PIZZA_LOYALTY_BACKEND when the service starts: ``ledger`` (our
own tables, the default) or ``saas`` (a third-party loyalty provider over HTTP, behind
the anti-corruption layer in ``saas_adapter``).
"""

from __future__ import annotations

from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.eventing import Service
from pizza.services.loyalty.tables import metadata

service = Service(
    "loyalty", tables=metadata,
    description="Points for completed orders, kept in our ledger or at a loyalty SaaS.",
)
service.declare_publishes(LoyaltyPointsAddedV1)

# Registered on import: the handler and the route.
from pizza.services.loyalty import api, handlers, saas_adapter  # noqa: E402

service.router = api.router
service.on_start.append(saas_adapter.open_adapter)
service.on_stop.append(saas_adapter.close_adapter)
service.breakers["loyalty_saas"] = saas_adapter.breaker_state

__all__ = ["handlers", "service"]
