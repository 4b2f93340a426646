"""The loyalty service as its routes see it (``create`` in ``__init__`` makes it)."""

from __future__ import annotations

from pizza.eventing import Service
from pizza.services.loyalty.saas_adapter import SaasConnection
from pizza.services.loyalty.tables import metadata


class LoyaltyService(Service):
    """Loyalty with its SaaS connection, or None on our own ledger."""

    def __init__(self, saas: SaasConnection | None) -> None:
        super().__init__(
            "loyalty", tables=metadata,
            description="Points for completed orders, kept in our ledger or at a loyalty "
                        "SaaS.",
        )
        self.saas = saas
