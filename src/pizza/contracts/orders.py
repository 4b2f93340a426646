"""Events published by the orders service (the core domain)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.eventing import Event, event

Fulfilment = Literal["delivery", "pickup"]


class OrderLine(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    menu_item_id: str
    name: str
    quantity: int
    unit_price: float


class Money(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    amount: float
    currency: str = "GBP"


@event("OrderConfirmed", version=1, source="orders", deprecated=date(2027, 6, 30),
       description="A customer's order was accepted and stored; the kitchen can cook it.")
class OrderConfirmedV1(Event):
    order_id: str
    customer_id: str
    items: list[OrderLine]
    order_value: float
    fulfilment: Fulfilment
    delivery_id: str | None = None


@event("OrderConfirmed", version=2, source="orders",
       description="A customer's order was accepted and stored; its value carries a currency.")
class OrderConfirmedV2(Event):
    order_id: str
    customer_id: str
    items: list[OrderLine]
    order_value: Money
    fulfilment: Fulfilment
    delivery_id: str | None = None


@event("OrderCancelled", version=1, source="orders",
       description="The customer cancelled an order before the kitchen finished it.")
class OrderCancelledV1(Event):
    order_id: str
    reason: str


@event("OrderCompleted", version=1, source="orders",
       description="An order reached the customer: delivered or collected.")
class OrderCompletedV1(Event):
    order_id: str
    customer_id: str
    order_value: float
    fulfilment: Fulfilment
