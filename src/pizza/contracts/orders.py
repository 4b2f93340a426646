"""Events published by the orders service (the core domain)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pizza.contracts.bounds import (
    MAX_LINES,
    Currency,
    CustomerId,
    DeliveryId,
    ItemName,
    MenuItemId,
    OrderId,
    Pounds,
    Quantity,
    Reason,
    UnitPrice,
)
from pizza.eventing import Event, event

Fulfilment = Literal["delivery", "pickup"]


class OrderLine(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    menu_item_id: MenuItemId
    name: ItemName
    quantity: Quantity
    unit_price: UnitPrice


class Money(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    amount: Pounds
    currency: Currency = "GBP"


Lines = Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]


@event("OrderConfirmed", version=1, source="orders", deprecated=date(2027, 6, 30),
       description="A customer's order was accepted and stored; the kitchen can cook it.")
class OrderConfirmedV1(Event):
    order_id: OrderId
    customer_id: CustomerId
    items: Lines
    order_value: Pounds
    fulfilment: Fulfilment
    delivery_id: DeliveryId | None = None


@event("OrderConfirmed", version=2, source="orders",
       description="A customer's order was accepted and stored; its value carries a currency.")
class OrderConfirmedV2(Event):
    order_id: OrderId
    customer_id: CustomerId
    items: Lines
    order_value: Money
    fulfilment: Fulfilment
    delivery_id: DeliveryId | None = None


@event("OrderCancelled", version=1, source="orders",
       description="The customer cancelled an order before the kitchen finished it.")
class OrderCancelledV1(Event):
    order_id: OrderId
    reason: Reason


@event("OrderCompleted", version=1, source="orders",
       description="An order reached the customer: delivered or collected.")
class OrderCompletedV1(Event):
    order_id: OrderId
    customer_id: CustomerId
    order_value: Pounds
    fulfilment: Fulfilment


@event("CustomerForgotten", version=1, source="orders",
       description="An operator erased a customer's personal data: every service erases "
                   "its own (emails, addresses), and the customer's key is purged, so their "
                   "sealed fields on the streams are unreadable. Only the id is carried.")
class CustomerForgottenV1(Event):
    customer_id: CustomerId
