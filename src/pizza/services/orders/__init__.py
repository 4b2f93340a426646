"""Orders: the core domain. Takes orders, announces them, lets them be cancelled until
the kitchen has finished them, and completes them when they reach the customer.

Produces OrderConfirmed (v1 and v2), OrderCancelled, OrderCompleted and the SendEmail
command (receipt and thank-you); learns delivery ids from DeliveryAddressRegistered and
progress from OrderPrepared, OrderDelivered and OrderCollected; forgets a customer on an
operator's request (``forgetting.py``: CustomerForgotten). A delivery order whose id
is not known yet is accepted and waits for it (``awaiting.py``); ``cancelling.py`` states
the rule that makes every order end in one state all services agree on.
"""

from pizza.contracts.notifications import SendEmailV1
from pizza.contracts.orders import (
    CustomerForgottenV1,
    OrderCancelledV1,
    OrderCompletedV1,
    OrderConfirmedV1,
    OrderConfirmedV2,
)
from pizza.eventing import Service
from pizza.services.orders.tables import metadata

service = Service("orders", tables=metadata,
                  description="Takes, cancels and completes orders; the core domain.")
service.declare_publishes(OrderConfirmedV1, OrderConfirmedV2, OrderCancelledV1,
                          OrderCompletedV1, CustomerForgottenV1, SendEmailV1)

# Imported after ``service`` exists: these modules register handlers and routes on it.
from pizza.services.orders import awaiting, forgetting, handlers  # noqa: E402
from pizza.services.orders.api import router  # noqa: E402
from pizza.services.orders.placing import watch_v1_readers  # noqa: E402

service.router = router
service.router.include_router(forgetting.router)  # the operator's erasure of a customer
service.on_start.append(watch_v1_readers)

__all__ = ["awaiting", "forgetting", "handlers", "service"]
