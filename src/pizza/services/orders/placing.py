"""Placing an order: validate it against the menu, then store it and announce it in one
unit of work.

The order row, the OrderConfirmed events (v1 while consumers need it, and v2), the
receipt's SendEmail and its ``order_emails`` row commit together or not at all; the
outbox relay publishes them after the commit. The order id is the story's correlationId,
so every message about one order, from any service, can be found by it.

Taking an order never depends on the bus. A delivery order names a deliveryId that the
delivery service issued; orders learns those ids from DeliveryAddressRegistered, so it may
not have heard of a brand-new one yet (or the broker is down). Such an order is accepted
all the same (202) and stored ``awaiting-address``, unannounced: ``awaiting.py`` confirms
it when the id's event arrives, or cancels it (with an email) if the id is not heard of
within PIZZA_DELIVERY_ID_DEADLINE. A deliveryId that is not even a well-formed id (a UUID)
is refused at once (422), and so is one orders knows belongs to another customer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StringConstraints
from pydantic.alias_generators import to_camel
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from pizza.contracts.bounds import UUID_PATTERN
from pizza.contracts.orders import Money, OrderConfirmedV1, OrderConfirmedV2, OrderLine
from pizza.eventing import Context, ServiceHost
from pizza.eventing.errors import Invalid
from pizza.services.orders import delivery_addresses, emails, menu
from pizza.services.orders.running import OrdersService
from pizza.services.orders.tables import orders
from pizza.web.text import ShortText

log = logging.getLogger("pizza.services.orders")

MAX_LINES = 50
MAX_QUANTITY = 50
# A plausible address: something@domain.tld, no spaces; the mail server has the last word.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
_DELIVERY_ID = re.compile(UUID_PATTERN)


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              extra="ignore")


def _whole_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class LineRequest(_Camel):
    # The schema lists the menu (clients and tools see what is orderable); an id off the
    # menu is answered by priced_lines with its own code, unknown-menu-item.
    menu_item_id: Annotated[str, StringConstraints(min_length=1, max_length=100),
                            Field(json_schema_extra={"enum": [i.id for i in menu.MENU]})]
    # A whole number, as its JSON Schema says: 2 or 2.0 (JSON has one kind of number);
    # "2", 2.5 and true are not quantities.
    quantity: Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY),
                        BeforeValidator(_whole_number)]


class PlaceOrder(_Camel):
    """The body of POST /api/orders; unknown fields are ignored."""

    # The schema states what _delivery_id checks: a delivery order names a deliveryId,
    # and it is a UUID (a pickup order's is ignored, whatever it is).
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"fulfilment": {"const": "delivery"}}, "required": ["fulfilment"]},
        "then": {"required": ["deliveryId"],
                 "properties": {"deliveryId": {"type": "string", "pattern": UUID_PATTERN}}},
    })

    customer_id: ShortText
    email: Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]
    items: Annotated[list[LineRequest], Field(min_length=1, max_length=MAX_LINES)]
    fulfilment: Literal["delivery", "pickup"]
    # Only a delivery order reads it (and wants a UUID); a pickup order ignores it.
    delivery_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    def fingerprint(self) -> str:
        """A digest of what was asked, to tell a retried request from a reused key."""
        canonical = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class Placed:
    order_id: str
    created: bool  # False when an earlier request with the same key made it


def publish_v1(service: OrdersService) -> bool:
    """Whether OrderConfirmed v1 still goes out beside v2 (the service's
    order_confirmed_v1 setting, PIZZA_ORDER_CONFIRMED_V1).

    "auto" asks the live registry whether any service still declares that it consumes
    v1; while the registry has not answered yet, v1 goes out (the safe side).
    """
    mode = service.settings.order_confirmed_v1
    if mode != "auto":
        return mode == "always"
    readers = service.running().usage_view().consumers(
        OrderConfirmedV1.info.type, OrderConfirmedV1.info.version)
    return readers is None or bool(readers)


async def watch_v1_readers(host: ServiceHost) -> None:
    """Warm the registry view at start, so the first orders already know who reads v1."""
    view = host.usage_view()
    with contextlib.suppress(Exception):
        await view.refresh()


async def place(service: OrdersService, request: PlaceOrder,
                idempotency_key: str | None) -> Placed:
    """Accept an order or refuse it (Invalid); nothing is stored when refused."""
    lines = priced_lines(request)
    delivery_id = _delivery_id(request)
    fingerprint = request.fingerprint()
    if idempotency_key is not None:
        earlier = await _by_key(service, idempotency_key, fingerprint)
        if earlier is not None:
            return Placed(earlier, created=False)
    status = "confirmed"
    if delivery_id is not None:
        status = await _status_for(service, delivery_id, request.customer_id)
    order_id = str(uuid.uuid4())
    try:
        async with service.unit_of_work(correlation_id=order_id) as ctx:
            await _store(ctx, order_id, request, lines, delivery_id, status,
                         idempotency_key, fingerprint)
            if status == "confirmed":
                await announce(service, ctx, order_id)
    except IntegrityError:
        # Another request with the same key committed first: that one is the order.
        earlier = (await _by_key(service, idempotency_key, fingerprint) if idempotency_key
                   else None)
        if earlier is None:
            raise
        return Placed(earlier, created=False)
    log.info("order %s accepted (%s)", order_id, status)
    return Placed(order_id, created=True)


def priced_lines(request: PlaceOrder) -> list[dict[str, Any]]:
    """Each line with the menu's name and price; every id must be on the menu."""
    unknown = sorted({line.menu_item_id for line in request.items
                      if menu.find(line.menu_item_id) is None})
    if unknown:
        raise Invalid(f"not on the menu: {', '.join(unknown)}", {"menuItemIds": unknown},
                      code="unknown-menu-item")
    priced = []
    for line in request.items:
        item = menu.find(line.menu_item_id)
        assert item is not None
        priced.append({"menuItemId": item.id, "name": item.name, "quantity": line.quantity,
                       "unitPricePence": item.price_pence})
    return priced


def _delivery_id(request: PlaceOrder) -> str | None:
    """The delivery id a delivery needs, well-formed; a pickup order ignores one if sent."""
    if request.fulfilment == "pickup":
        return None
    if request.delivery_id is None:
        raise Invalid("a delivery order needs the deliveryId of a registered address",
                      {"field": "deliveryId"}, code="delivery-id-required")
    if not _DELIVERY_ID.match(request.delivery_id):
        raise Invalid("deliveryId is not an id the delivery service issues (a UUID)",
                      {"field": "deliveryId"}, code="unknown-delivery-id")
    return request.delivery_id


async def _status_for(service: OrdersService, delivery_id: str, customer_id: str) -> str:
    """``confirmed`` for a known id of this customer's, ``awaiting-address`` for an id
    orders has not heard of yet; 422 for another customer's (one local read, no wait)."""
    verdict = await delivery_addresses.check(service, delivery_id, customer_id)
    if verdict == "ok":
        return "confirmed"
    if verdict == "unknown":
        return "awaiting-address"
    # Another customer's id is answered like an unknown one: ids are not disclosed.
    raise Invalid("no delivery address with this id is registered for this customer",
                  {"deliveryId": delivery_id}, code="unknown-delivery-id")


async def _by_key(service: OrdersService, key: str, fingerprint: str) -> str | None:
    """The order an earlier request with this key made, or None; 422 if it asked else."""
    async with service.read() as conn:
        row = (await conn.execute(
            select(orders.c.id, orders.c.request_hash)
            .where(orders.c.idempotency_key == key))).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise Invalid("this Idempotency-Key was used for a different order",
                      {"orderId": row.id}, code="idempotency-key-reused")
    return str(row.id)


async def _store(ctx: Context, order_id: str, request: PlaceOrder,
                 lines: list[dict[str, Any]], delivery_id: str | None, status: str,
                 idempotency_key: str | None, fingerprint: str) -> None:
    value_pence = sum(line["quantity"] * line["unitPricePence"] for line in lines)
    await ctx.db.execute(_STORE, {
        "id": order_id, "customer_id": request.customer_id, "email": request.email,
        "items": lines, "value_pence": value_pence, "fulfilment": request.fulfilment,
        "delivery_id": delivery_id, "status": status, "idempotency_key": idempotency_key,
        "request_hash": fingerprint, "created_at": datetime.now(UTC)})


_STORE = orders.insert()
_ORDER = select(orders).where(orders.c.id == bindparam("order_id"))


async def announce(service: OrdersService, ctx: Context, order_id: str) -> None:
    """Publish a confirmed order (OrderConfirmed v1 while read, and v2) and send its
    receipt, in ``ctx``'s transaction, from the stored row."""
    order = (await ctx.db.execute(_ORDER, {"order_id": order_id})).one()
    lines: list[dict[str, Any]] = order.items
    event_lines = [OrderLine(menu_item_id=line["menuItemId"], name=line["name"],
                             quantity=line["quantity"],
                             unit_price=menu.pounds(line["unitPricePence"]))
                   for line in lines]
    value = menu.pounds(order.value_pence)
    common: dict[str, Any] = {"order_id": order_id, "customer_id": order.customer_id,
                              "items": event_lines, "fulfilment": order.fulfilment,
                              "delivery_id": order.delivery_id}
    if publish_v1(service):
        ctx.publish(OrderConfirmedV1(order_value=value, **common), correlation_id=order_id)
    ctx.publish(OrderConfirmedV2(order_value=Money(amount=value, currency=menu.CURRENCY),
                                 **common), correlation_id=order_id)
    if order.email != emails.FORGOTTEN:
        await emails.send(ctx, order_id, "receipt",
                          emails.receipt(order_id, order.email, lines, order.value_pence,
                                         order.fulfilment, sender=service.settings.mail_from),
                          order.customer_id)
