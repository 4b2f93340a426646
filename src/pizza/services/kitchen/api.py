"""The kitchen's HTTP side: the ticket list and the two buttons staff press."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.eventing import ServiceHost
from pizza.eventing.service import route_causes
from pizza.services import paging
from pizza.services.kitchen import simulation, tickets
from pizza.services.running import running_host

router: APIRouter = APIRouter(prefix="/api/kitchen", tags=["kitchen"])
OrderId = Annotated[str, Path(alias="orderId", max_length=100)]
Host = Annotated[ServiceHost, running_host("kitchen")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class TicketItem(_Camel):
    menu_item_id: str
    name: str
    quantity: int


class Ticket(_Camel):
    order_id: str
    stage: tickets.Stage
    items: list[TicketItem]
    fulfilment: Literal["delivery", "pickup"]
    created_at: str


class StageChange(_Camel):
    order_id: str
    stage: tickets.Stage


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds (SQLite gives back naive UTC datetimes)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# The kitchen's refusals (tickets.TicketNotFound, TicketRefused), as the entry point
# answers them (web/errors.py), documented in the OpenAPI entries of the buttons.
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no ticket for this order (yet)"},
    409: {"description": "the ticket was withdrawn (cancelled) or is at another stage"},
}


ListedStage = Literal["new", "preparing", "prepared"]


@router.get("/tickets", response_model=list[Ticket], responses=paging.NOT_MODIFIED)
async def list_tickets(
    request: Request, response: Response, host: Host,
    stage: Annotated[list[ListedStage] | None, Query(description="only these stages")] = None,
    finished_within: paging.FinishedWithin = None,
    order: paging.SortOrder = "oldest",
    before: paging.Cursor = None,
    after: paging.Cursor = None,
    limit: paging.Limit = None,
) -> Response:
    """Tickets the kitchen holds (not withdrawn), newest last; without parameters all of
    them. A board asks for a page (see services/paging.py): e.g.
    ``?finishedWithin=600&limit=100`` is the work to do and what was prepared in the last
    ten minutes, ``?stage=prepared&order=latest&limit=20`` the history."""
    window = paging.Window(stages=paging.stages_or(stage, tickets.SHOWN),
                           finished_within=finished_within, order=order, before=before,
                           after=after, limit=limit)
    async with host.db.read() as conn:
        rows = await tickets.ticket_page(conn, window)
    rows = paging.trim(rows, limit, request, response, lambda row: row.order_id, order)
    return paging.answer([_ticket(row) for row in rows], request, response)


def _ticket(row: Any) -> Ticket:
    return Ticket(order_id=row.order_id, stage=row.stage, fulfilment=row.fulfilment,
                  items=[TicketItem.model_validate(item) for item in row.items],
                  created_at=iso(row.created_at))


@router.post("/tickets/{orderId}/start", status_code=202, response_model=StageChange,
             responses=REFUSALS, openapi_extra=route_causes(OrderPreparingV1))
async def start_ticket(order_id: OrderId, host: Host) -> StageChange:
    """Start cooking (again is harmless: no second OrderPreparing)."""
    async with host.unit_of_work() as ctx:
        await tickets.start_one(ctx, order_id)
        ctx.on_commit(lambda: host.wake(simulation.STAFF))  # simulated cooks: due soon
    return StageChange(order_id=order_id, stage="preparing")


# A ticket never started announces OrderPreparing first (tickets.finish).
@router.post("/tickets/{orderId}/prepared", status_code=202, response_model=StageChange,
             responses=REFUSALS,
             openapi_extra=route_causes(OrderPreparingV1, OrderPreparedV1))
async def ticket_prepared(order_id: OrderId, host: Host) -> StageChange:
    """Cooked and boxed (again is harmless: no second OrderPrepared)."""
    async with host.unit_of_work() as ctx:
        await tickets.finish_one(ctx, order_id)
    return StageChange(order_id=order_id, stage="prepared")
