"""HTTP side of the query model: one order, its live stream, a customer's orders; and the
journal of every message on the bus (operator only: the /events page).

``GET /api/orders?customerId=...`` is not in CONTRACT.md: a convenience listing the
customer's visible orders, newest confirmation first, at most 50.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from pizza.contracts.bounds import UUID_PATTERN
from pizza.eventing.errors import NotFound
from pizza.services.running import running_service
from pizza.services.tracking import journal
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.readmodel import ReadModel
from pizza.services.tracking.running import TrackingService
from pizza.services.tracking.stream import follow
from pizza.web.access import CurrentCaller
from pizza.web.identity import Caller

router = APIRouter(tags=["tracking"])
Tracking = Annotated[TrackingService, running_service("tracking", TrackingService)]

LIST_LIMIT = 50
PING_SECONDS = 15
# How long a stream waits for an order to appear before answering 404: a client opens
# the stream right after its 202, a moment before the query side has seen the order.
# An id that is not an order id (orders makes UUIDs) can never appear: 404 at once.
APPEAR_SECONDS = 5.0
STREAM_SECONDS = 300.0  # the longest a journal stream lasts before its client reconnects
MAX_SEQ = 2**62  # an entry number (seq) the database can hold; anything above is refused
_ORDER_ID = re.compile(UUID_PATTERN)


OrderId = Path(alias="orderId", min_length=1, max_length=64)


@router.get("/api/orders/{orderId}", response_model=OrderView,
            response_model_exclude_none=True, summary="An order as the query side sees it",
            responses={404: {"description": "the query side has not seen this order"}})
async def get_order(caller: CurrentCaller, tracking: Tracking,
                    order_id: str = OrderId) -> OrderView:
    view = await tracking.read_models.current().store.get(order_id)
    if view is None or not view.is_visible or not caller.may_act_for(view.customer_id):
        raise NotFound(f"no order {order_id} (yet)", {"orderId": order_id})
    return view


@router.get("/api/orders/{orderId}/stream", summary="Server-Sent Events, one per change",
            response_class=EventSourceResponse,
            responses={404: {"description": "no such order (it did not appear within 5 s)"}})
async def stream_order(caller: CurrentCaller, tracking: Tracking,
                       order_id: str = OrderId) -> EventSourceResponse:
    """``event: order`` with the whole document as data: first the current one, then one
    per change, ending after completed or cancelled. 404 (like the plain GET) if the
    order does not appear within ``APPEAR_SECONDS``, at once if the id is not an order
    id."""
    model = tracking.read_models.current()
    if not await _appears(model, order_id, caller):
        raise NotFound(f"no order {order_id} (yet)", {"orderId": order_id})
    return EventSourceResponse(_order_events(model, order_id), ping=PING_SECONDS)


async def _appears(model: ReadModel, order_id: str, caller: Caller) -> bool:
    """Whether the order is (or within APPEAR_SECONDS becomes) visible to the query side,
    and the caller's to see (another customer's order is never answered)."""
    if not _ORDER_ID.match(order_id):
        return False
    view = await model.store.get(order_id)
    if view is not None and view.is_visible:
        return caller.may_act_for(view.customer_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPEAR_SECONDS
    with model.hub.listen(order_id) as signal:  # read again once listening: no lost ring
        while True:
            view = await model.store.get(order_id)
            if view is not None and view.is_visible:
                return caller.may_act_for(view.customer_id)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await signal.wait(min(remaining, model.store.poll_seconds))


async def _order_events(model: ReadModel, order_id: str) -> AsyncIterator[ServerSentEvent]:
    async for view in follow(model.store, model.hub, order_id):
        yield ServerSentEvent(event="order", data=view.model_dump_json(
            by_alias=True, exclude_none=True))


@router.get("/api/orders", response_model=list[OrderView], response_model_exclude_none=True,
            summary="A customer's orders, newest first (not in CONTRACT.md)")
async def list_orders(caller: CurrentCaller, tracking: Tracking,
                      customer_id: str = Query(alias="customerId", min_length=1,
                                               max_length=128)) -> list[OrderView]:
    """An operator may ask about anyone; a customer about themselves (else: none)."""
    if not caller.may_act_for(customer_id):
        return []
    return await tracking.read_models.current().store.for_customer(customer_id, LIST_LIMIT)


# -- the journal of every message (the operator's /events page; operator only) ----------

EventsOrder = Query(None, alias="orderId", min_length=1, max_length=64,
                    description="only this order's story (its correlationId)")
EventsType = Query(None, alias="type", min_length=1, max_length=64,
                   description="only messages of this type, e.g. OrderConfirmed")


@router.get("/api/events", summary="The newest messages seen on the bus (metadata only)",
            tags=["events"])
async def list_events(tracking: Tracking, order_id: str | None = EventsOrder,
                      type_: str | None = EventsType,
                      limit: int = Query(100, ge=1, le=journal.MAX_LIMIT),
                      before: int | None = Query(None, ge=1, le=MAX_SEQ, description=(
                          "only entries numbered (seq) below this: the next page"))
                      ) -> list[dict[str, Any]]:
    """Newest first: ``{seq, kind, id, type, version, source, time, correlationId,
    causationId, subject, deadLetter}`` (``deadLetter``: ``{reason, consumer}`` or null).
    Kept for 24 hours and at most 20,000 entries."""
    return await journal.newest(tracking.journals.current().db, order_id=order_id, type_=type_,
                                limit=limit, before=before)


@router.get("/api/events/stream", summary="Server-Sent Events: each new journal entry",
            response_class=EventSourceResponse, tags=["events"])
async def stream_events(tracking: Tracking, order_id: str | None = EventsOrder,
                        type_: str | None = EventsType,
                        after: int | None = Query(None, ge=0, le=MAX_SEQ, description=(
                            "start after this entry (seq); default: from now")),
                        seconds: float = Query(STREAM_SECONDS, ge=0, le=STREAM_SECONDS,
                                               description="how long this connection lasts"),
                        last_event_id: str | None = Header(
                            None, alias="Last-Event-ID", max_length=40, description=(
                                "the last entry (seq) a reconnecting EventSource got; "
                                "anything else is ignored"))
                        ) -> EventSourceResponse:
    """``event: entry`` with one entry (as ``GET /api/events`` gives it, its ``id`` the
    entry's seq) per message, in the order they arrived, from now (or after ``after``) on.
    A connection ends after ``seconds`` (at most 300); a browser's EventSource then
    reconnects with ``Last-Event-ID`` and goes on after the last entry it got."""
    running = tracking.journals.current()
    resumed = _seq(last_event_id)
    start = resumed if resumed is not None else after
    if start is None:
        start = await journal.last_seq(running.db)
    return EventSourceResponse(_journal_entries(running, start, order_id, type_, seconds),
                               ping=PING_SECONDS)


def _seq(header: str | None) -> int | None:
    """The entry number an EventSource sends back (the ``id`` we gave), else None: the
    header is the browser's to send, so anything else starts the stream as if it were
    not there rather than refusing it."""
    text = (header or "").strip()
    return int(text) if text.isdigit() and int(text) <= MAX_SEQ else None


async def _journal_entries(running: journal.Journal, after: int, order_id: str | None,
                           type_: str | None, seconds: float) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + seconds
    while True:
        entries = await journal.since(running.db, after, order_id=order_id, type_=type_)
        for entry in entries:
            after = entry["seq"]
            yield ServerSentEvent(event="entry", id=str(after), retry=1000,
                                  data=orjson.dumps(entry).decode())
        remaining = ends_at - loop.time()
        if remaining <= 0:
            return
        if len(entries) < journal.MAX_LIMIT:
            await running.wait(min(remaining, journal.POLL_SECONDS))


@router.get("/api/events/story/{orderId}", summary="One order's story, every message",
            tags=["events"])
async def order_story(tracking: Tracking, order_id: str = OrderId) -> dict[str, Any]:
    """``{"orderId", "messages": [...]}``: every message whose correlationId is the order,
    in time order (entries as ``GET /api/events`` gives them, at most 500); each
    ``causationId`` names the message that caused it. Empty until the journal saw it."""
    messages = await journal.story(tracking.journals.current().db, order_id)
    return {"orderId": order_id, "messages": messages}
