"""Orders: the core domain. Takes orders, announces them, lets them be cancelled until
the kitchen has finished them, and completes them when they reach the customer.

Produces OrderConfirmed (v1 and v2), OrderCancelled, OrderCompleted and the SendEmail
command (receipt and thank-you); learns delivery ids from DeliveryAddressRegistered and
progress from OrderPrepared, OrderDelivered and OrderCollected; forgets a customer on an
operator's request (``forgetting.py``: CustomerForgotten). A delivery order whose id
is not known yet is accepted and waits for it (``awaiting.py``); ``cancelling.py`` states
the rule that makes every order end in one state all services agree on.

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

import functools

from fastapi import APIRouter

from pizza.config import Settings
from pizza.contracts.delivery import DeliveryAddressRegisteredV1, OrderDeliveredV1
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.notifications import EmailFailedV1, EmailSentV1, SendEmailV1
from pizza.contracts.orders import (
    CustomerForgottenV1,
    OrderCancelledV1,
    OrderCompletedV1,
    OrderConfirmedV1,
    OrderConfirmedV2,
)
from pizza.contracts.pickup import OrderCollectedV1
from pizza.eventing.service import inject
from pizza.services.orders import api, awaiting, forgetting, handlers, placing
from pizza.services.orders.running import OrdersService


def create(settings: Settings) -> OrdersService:
    """Orders, sending its emails from ``settings.mail_from`` and OrderConfirmed v1 as
    ``settings.order_confirmed_v1`` says."""
    service = OrdersService(settings)
    service.declare_publishes(OrderConfirmedV1, OrderConfirmedV2, OrderCancelledV1,
                              OrderCompletedV1, CustomerForgottenV1, SendEmailV1)
    service.handles(DeliveryAddressRegisteredV1, start="all",
                    causes=(OrderConfirmedV1, OrderConfirmedV2, OrderCancelledV1,
                            SendEmailV1))(
        inject(handlers.learn_delivery_address, service=service))
    service.handles(OrderPreparedV1)(handlers.note_prepared)
    service.handles(OrderDeliveredV1, causes=(OrderCompletedV1, SendEmailV1))(
        inject(handlers.complete_delivered, service=service))
    service.handles(OrderCollectedV1, causes=(OrderCompletedV1, SendEmailV1))(
        inject(handlers.complete_collected, service=service))
    service.on_reply(EmailSentV1)(handlers.email_sent)
    service.on_reply(EmailFailedV1)(handlers.email_failed)
    service.runs("delivery-id-deadline", idle_seconds=awaiting.CHECK_SECONDS)(
        functools.partial(awaiting.check_waiting_orders, service))
    service.router = APIRouter()
    service.router.include_router(api.router)
    service.router.include_router(forgetting.router)  # the operator's erasure of a customer
    service.on_start.append(placing.watch_v1_readers)
    return service


__all__ = ["OrdersService", "create"]
