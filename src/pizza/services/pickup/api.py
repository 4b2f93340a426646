"""The pickup counter's HTTP side: what waits, and the "collected" button."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.contracts.pickup import OrderCollectedV1
from pizza.eventing import ServiceHost
from pizza.eventing.service import route_causes
from pizza.services import paging
from pizza.services.pickup import shelf
from pizza.services.running import running_host

router: APIRouter = APIRouter(prefix="/api/pickup", tags=["pickup"])
OrderId = Annotated[str, Path(alias="orderId", max_length=100)]
Host = Annotated[ServiceHost, running_host("pickup")]


class PickupOrder(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    order_id: str
    stage: shelf.Stage


ListedStage = Literal["waiting", "collected"]


@router.get("/orders", response_model=list[PickupOrder], responses=paging.NOT_MODIFIED)
async def list_waiting(
    request: Request, response: Response, host: Host,
    stage: Annotated[list[ListedStage] | None,
                     Query(description="only these stages (default: waiting)")] = None,
    finished_within: paging.FinishedWithin = None,
    order: paging.SortOrder = "oldest",
    before: paging.Cursor = None,
    after: paging.Cursor = None,
    limit: paging.Limit = None,
) -> Response:
    """Orders waiting at the counter, oldest first; without parameters all of them. A
    board asks for a page (see services/paging.py): e.g.
    ``?stage=waiting&stage=collected&finishedWithin=600&limit=100``, or the history
    ``?stage=collected&order=latest&limit=20``."""
    window = paging.Window(stages=paging.stages_or(stage, ("waiting",)),
                           finished_within=finished_within, order=order, before=before,
                           after=after, limit=limit)
    async with host.db.read() as conn:
        rows = await shelf.shelf_page(conn, window)
    rows = paging.trim(rows, limit, request, response, lambda row: row.order_id, order)
    return paging.answer([PickupOrder(order_id=row.order_id, stage=row.stage) for row in rows],
                         request, response)


@router.post("/orders/{orderId}/collected", status_code=202, response_model=PickupOrder,
             responses={404: {"description": "no such order at the counter (yet)"},
                        409: {"description": "the order was withdrawn (cancelled)"}},
             openapi_extra=route_causes(OrderCollectedV1))
async def collected(order_id: OrderId, host: Host) -> PickupOrder:
    """The customer took the order (again is harmless: no second OrderCollected).
    Refused with shelf.OrderNotFound (404) or CollectionRefused (409)."""
    async with host.unit_of_work() as ctx:
        await shelf.collect_one(ctx, order_id)
    return PickupOrder(order_id=order_id, stage="collected")
