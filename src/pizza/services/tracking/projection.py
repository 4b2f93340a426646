"""The read model of one order, folded from the events of its story.

Each event type comes on a queue of its own, so they arrive in any order, late, or twice.
The fold is therefore built to give the same document whatever the order of arrival and
however often an event is applied (it is commutative and idempotent):

* The timeline holds each event type once. If the same type is seen again with another
  time (a republish), the earliest time is kept, so the result does not depend on which
  copy came first. The timeline is sorted by the events' ``metadata.time``, not by
  arrival.
* The status is not stored as a running value but computed from the set of event types
  seen (``status_of``), so it can only move forward and a late event never rewinds it.
* The order's own fields (customerId, value, currency, itemCount, fulfilment) come only
  from OrderConfirmed; a document first created by a later event has them empty until
  OrderConfirmed arrives, and is not shown until then (``is_visible``), unless it is
  cancelled: an order cancelled before it was ever confirmed (its delivery address never
  became known) is shown cancelled, without them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.contracts.orders import OrderConfirmedV1, OrderConfirmedV2

Status = Literal["confirmed", "preparing", "prepared", "out-for-delivery",
                 "ready-for-collection", "delivered", "collected", "completed", "cancelled"]

CONFIRMED = "OrderConfirmed"
CANCELLED = "OrderCancelled"

# How far along each event puts an order. Equal ranks are the two branches of one step
# (delivery or pickup); an order only ever takes one of them.
RANK: dict[str, tuple[int, Status]] = {
    CONFIRMED: (1, "confirmed"),
    "OrderPreparing": (2, "preparing"),
    "OrderPrepared": (3, "prepared"),
    "OrderOutForDelivery": (4, "out-for-delivery"),
    "OrderReadyForCollection": (4, "ready-for-collection"),
    "OrderDelivered": (5, "delivered"),
    "OrderCollected": (5, "collected"),
    "OrderCompleted": (6, "completed"),
}
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "cancelled"})


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class TimelineEntry(_Camel):
    type: str
    time: str


class OrderView(_Camel):
    """The document ``GET /api/orders/{orderId}`` answers (CONTRACT.md section 2)."""

    order_id: str
    customer_id: str | None = None
    status: Status = "confirmed"
    value: float | None = None
    currency: str | None = None
    item_count: int | None = None
    fulfilment: Literal["delivery", "pickup"] | None = None
    loyalty_points: int | None = None
    timeline: list[TimelineEntry] = []

    def to_json(self) -> dict[str, Any]:
        """The stored and served form: camelCase, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> OrderView:
        return cls.model_validate(raw)

    @property
    def is_visible(self) -> bool:
        """Shown once OrderConfirmed has been seen (before that it has no owner), or once
        it is cancelled: the customer must see how an order ended."""
        return any(entry.type in (CONFIRMED, CANCELLED) for entry in self.timeline)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def confirmed_at(self) -> str | None:
        return next((e.time for e in self.timeline if e.type == CONFIRMED), None)


@dataclass(frozen=True)
class Fact:
    """One event as the projection needs it: which order, what, when, and what it tells."""

    order_id: str
    type: str
    time: str
    fields: dict[str, Any] = field(default_factory=dict)  # OrderView fields it sets


def confirmed_fields(event: OrderConfirmedV1 | OrderConfirmedV2) -> dict[str, Any]:
    """What OrderConfirmed tells the read model, for each version we may subscribe to.

    Moving the subscription from v1 to v2 changes only ``ORDER_CONFIRMED`` in handlers.py;
    both shapes are understood here.
    """
    if isinstance(event, OrderConfirmedV2):
        value, currency = event.order_value.amount, event.order_value.currency
    else:
        value, currency = event.order_value, "GBP"  # v1 values are pounds sterling
    return {
        "customer_id": event.customer_id,
        "value": value,
        "currency": currency,
        "item_count": sum(line.quantity for line in event.items),
        "fulfilment": event.fulfilment,
    }


def status_of(types: Iterable[str]) -> Status:
    """The status an order has after these event types, whatever order they came in.

    The furthest step reached wins (accepted < confirmed < preparing < prepared <
    out-for-delivery | ready-for-collection < delivered | collected < completed).
    OrderCancelled overrides every step but ``completed``: orders is the authority on a
    cancellation, and once it has published OrderCancelled the order is cancelled, even
    if the kitchen finished it meanwhile (a cancel racing OrderPrepared; see
    orders/cancelling.py). Orders never completes a cancelled order, so ``completed``
    with OrderCancelled cannot happen; should it, completed stands. Without any ranked
    event the status is ``confirmed``.
    """
    seen = set(types)
    ranked = [RANK[t] for t in seen if t in RANK]
    _rank, status = max(ranked, default=RANK[CONFIRMED])
    if CANCELLED in seen and status != "completed":
        return "cancelled"
    return status


def apply(view: OrderView | None, fact: Fact) -> OrderView:
    """The document after ``fact``: idempotent and independent of arrival order."""
    current = view or OrderView(order_id=fact.order_id)
    timeline = _with_entry(current.timeline, TimelineEntry(type=fact.type, time=fact.time))
    return current.model_copy(update={
        **fact.fields,
        "timeline": timeline,
        "status": status_of(entry.type for entry in timeline),
    })


def _with_entry(timeline: list[TimelineEntry], entry: TimelineEntry) -> list[TimelineEntry]:
    others = [e for e in timeline if e.type != entry.type]
    earlier = [e for e in timeline if e.type == entry.type]
    keep = min([*earlier, entry], key=_sort_key)
    return sorted([*others, keep], key=_sort_key)


def _sort_key(entry: TimelineEntry) -> tuple[datetime, int, str]:
    """By time; equal times by business step, then by name, so the sort is total."""
    return (parse_time(entry.time), RANK.get(entry.type, (99, ""))[0], entry.type)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as an aware datetime; an unreadable one sorts last."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
