"""HTTP side of the query model: one order, its live stream, a customer's orders.

``GET /api/orders?customerId=...`` is not in CONTRACT.md: a convenience listing the
customer's visible orders, newest confirmation first, at most 50.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Path, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from pizza.contracts.bounds import UUID_PATTERN
from pizza.services.tracking import readmodel
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.stream import follow
from pizza.web.access import CurrentCaller
from pizza.web.errors import ApiError
from pizza.web.identity import Caller

router = APIRouter(tags=["tracking"])

LIST_LIMIT = 50
PING_SECONDS = 15
# How long a stream waits for an order to appear before answering 404: a client opens
# the stream right after its 202, a moment before the query side has seen the order.
# An id that is not an order id (orders makes UUIDs) can never appear: 404 at once.
APPEAR_SECONDS = 5.0
_ORDER_ID = re.compile(UUID_PATTERN)


OrderId = Path(alias="orderId", min_length=1, max_length=64)


@router.get("/api/orders/{orderId}", response_model=OrderView,
            response_model_exclude_none=True, summary="An order as the query side sees it",
            responses={404: {"description": "the query side has not seen this order"}})
async def get_order(caller: CurrentCaller, order_id: str = OrderId) -> OrderView:
    view = await readmodel.current().store.get(order_id)
    if view is None or not view.is_visible or not caller.may_act_for(view.customer_id):
        raise ApiError(404, "not-found", f"no order {order_id} (yet)",
                       {"orderId": order_id})
    return view


@router.get("/api/orders/{orderId}/stream", summary="Server-Sent Events, one per change",
            response_class=EventSourceResponse,
            responses={404: {"description": "no such order (it did not appear within 5 s)"}})
async def stream_order(caller: CurrentCaller, order_id: str = OrderId) -> EventSourceResponse:
    """``event: order`` with the whole document as data: first the current one, then one
    per change, ending after completed or cancelled. 404 (like the plain GET) if the
    order does not appear within ``APPEAR_SECONDS``, at once if the id is not an order
    id."""
    if not await _appears(order_id, caller):
        raise ApiError(404, "not-found", f"no order {order_id} (yet)", {"orderId": order_id})
    return EventSourceResponse(_order_events(order_id), ping=PING_SECONDS)


async def _appears(order_id: str, caller: Caller) -> bool:
    """Whether the order is (or within APPEAR_SECONDS becomes) visible to the query side,
    and the caller's to see (another customer's order is never answered)."""
    model = readmodel.current()
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


async def _order_events(order_id: str) -> AsyncIterator[ServerSentEvent]:
    model = readmodel.current()
    async for view in follow(model.store, model.hub, order_id):
        yield ServerSentEvent(event="order", data=view.model_dump_json(
            by_alias=True, exclude_none=True))


@router.get("/api/orders", response_model=list[OrderView], response_model_exclude_none=True,
            summary="A customer's orders, newest first (not in CONTRACT.md)")
async def list_orders(caller: CurrentCaller,
                      customer_id: str = Query(alias="customerId", min_length=1,
                                               max_length=128)) -> list[OrderView]:
    """An operator may ask about anyone; a customer about themselves (else: none)."""
    if not caller.may_act_for(customer_id):
        return []
    return await readmodel.current().store.for_customer(customer_id, LIST_LIMIT)
