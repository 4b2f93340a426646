"""The orders service as its routes, handlers and background job see it (``create`` in
``__init__`` makes it): the declared service with the settings it was built from."""

from __future__ import annotations

from pizza.config import Settings
from pizza.eventing import Service
from pizza.services.orders.tables import metadata


class OrdersService(Service):
    """Orders, with its settings: who its emails come from (``mail_from``) and whether
    OrderConfirmed v1 still goes out (``order_confirmed_v1``)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("orders", tables=metadata,
                         description="Takes, cancels and completes orders; the core domain.")
        self.settings = settings
