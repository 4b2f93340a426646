"""HTTP side of the query model: one order, its live stream, a customer's orders.

``GET /api/orders?customerId=...`` is not in CONTRACT.md: a convenience listing the
customer's visible orders, newest confirmation first, at most 50.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Path, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from pizza.services.tracking import readmodel
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.stream import follow
from pizza.web.errors import ApiError

router = APIRouter(tags=["tracking"])

LIST_LIMIT = 50
PING_SECONDS = 15


OrderId = Path(alias="orderId", min_length=1, max_length=64)


@router.get("/api/orders/{orderId}", response_model=OrderView,
            response_model_exclude_none=True, summary="An order as the query side sees it")
async def get_order(order_id: str = OrderId) -> OrderView:
    view = await readmodel.current().store.get(order_id)
    if view is None or not view.is_visible:
        raise ApiError(404, "not-found", f"no order {order_id} (yet)",
                       {"orderId": order_id})
    return view


@router.get("/api/orders/{orderId}/stream", summary="Server-Sent Events, one per change",
            response_class=EventSourceResponse)
async def stream_order(order_id: str = OrderId) -> EventSourceResponse:
    """``event: order`` with the whole document as data: first the current one (if the
    order is known), then one per change, ending after completed or cancelled."""
    return EventSourceResponse(_order_events(order_id), ping=PING_SECONDS)


async def _order_events(order_id: str) -> AsyncIterator[ServerSentEvent]:
    model = readmodel.current()
    async for view in follow(model.store, model.hub, order_id):
        yield ServerSentEvent(event="order", data=view.model_dump_json(
            by_alias=True, exclude_none=True))


@router.get("/api/orders", response_model=list[OrderView], response_model_exclude_none=True,
            summary="A customer's orders, newest first (not in CONTRACT.md)")
async def list_orders(customer_id: str = Query(alias="customerId", min_length=1,
                                               max_length=128)) -> list[OrderView]:
    return await readmodel.current().store.for_customer(customer_id, LIST_LIMIT)
