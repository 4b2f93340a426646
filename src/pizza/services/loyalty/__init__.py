"""Loyalty: one point per whole pound of each completed order (LoyaltyPointsAdded).

Two backends, chosen by the settings given to ``create`` (PIZZA_LOYALTY_BACKEND):
``ledger`` (our own tables, the default) or ``saas`` (a third-party loyalty provider over
HTTP, behind the anti-corruption layer in ``saas_adapter``). Importing this package
builds nothing.
"""

from __future__ import annotations

import functools

from pizza.config import Settings
from pizza.contracts.loyalty import LoyaltyPointsAddedV1
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Backoff
from pizza.eventing.service import inject
from pizza.services.loyalty import api, handlers
from pizza.services.loyalty.running import LoyaltyService
from pizza.services.loyalty.saas_adapter import SaasConnection


def create(settings: Settings) -> LoyaltyService:
    """Loyalty on our ledger, or on the SaaS at ``settings.loyalty_saas_url``."""
    saas = (SaasConnection(settings.loyalty_saas_url)
            if settings.loyalty_backend == "saas" else None)
    service = LoyaltyService(saas)
    service.declare_publishes(LoyaltyPointsAddedV1)
    # A small intake and a long, patient retry: with the SaaS backend each message is an
    # HTTP call to someone else, who may rate limit us or be down for minutes. Ten
    # attempts with backoff up to two minutes ride out about six minutes of outage
    # before a dead letter.
    # The SaaS is called before the handler's transaction opens, never inside it.
    service.handles(OrderCompletedV1, max_in_flight=4, max_attempts=10,
                    backoff=Backoff(initial=1.0, factor=2.0, maximum=120.0),
                    causes=(LoyaltyPointsAddedV1,),
                    before=(functools.partial(handlers.credit_at_saas, saas=saas)
                            if saas is not None else None),
                    )(inject(handlers.add_points, on_saas=saas is not None))
    service.router = api.router
    if saas is not None:
        service.on_start.append(saas.open)
        service.on_stop.append(saas.close)
    service.breakers["loyalty_saas"] = (saas.breaker_state if saas is not None
                                        else lambda: None)
    return service


__all__ = ["LoyaltyService", "create"]
