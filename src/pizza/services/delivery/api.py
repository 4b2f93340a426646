"""Delivery's HTTP side: registering addresses, the job list, and the drivers' buttons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.contracts.delivery import (
    DeliveryAddressRegisteredV1,
    OrderDeliveredV1,
    OrderOutForDeliveryV1,
)
from pizza.eventing import ServiceHost
from pizza.eventing.service import route_causes
from pizza.services import paging
from pizza.services.delivery import addresses, jobs, simulation
from pizza.services.running import running_host
from pizza.web.access import CurrentCaller, acting_for
from pizza.web.text import ShortText

router: APIRouter = APIRouter(tags=["delivery"])
OrderId = Annotated[str, Path(alias="orderId", max_length=100)]
Host = Annotated[ServiceHost, running_host("delivery")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Registered(_Camel):
    delivery_id: str


class Address(_Camel):
    line1: str
    line2: str | None = None
    city: str
    postcode: str


class Job(_Camel):
    order_id: str
    stage: jobs.Stage
    driver: str | None
    address: Address | None


class Driver(_Camel):
    driver: ShortText


class StageChange(_Camel):
    order_id: str
    stage: jobs.Stage


@router.post("/api/delivery-addresses", status_code=201, response_model=Registered,
             openapi_extra=route_causes(DeliveryAddressRegisteredV1))
async def register_address(address: addresses.NewAddress,
                           caller: CurrentCaller, host: Host) -> Registered:
    """Keep an address; orders name it by the id answered here."""
    acting_for(caller, address.customer_id)
    async with host.unit_of_work() as ctx:
        delivery_id = await addresses.register(ctx, address)
    return Registered(delivery_id=delivery_id)


# Delivery's refusals (jobs.JobNotFound, JobRefused), as the entry point answers them
# (web/errors.py), documented in the OpenAPI entries of the drivers' buttons.
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no delivery job for this order (yet)"},
    409: {"description": "the job was withdrawn (cancelled) or is at another stage"},
}


ListedStage = Literal["awaiting", "out", "delivered"]


@router.get("/api/delivery/jobs", response_model=list[Job], responses=paging.NOT_MODIFIED)
async def list_jobs(
    request: Request, response: Response, host: Host,
    stage: Annotated[list[ListedStage] | None,
                     Query(description="only these stages (default: awaiting and out)")
                     ] = None,
    finished_within: paging.FinishedWithin = None,
    order: paging.SortOrder = "oldest",
    before: paging.Cursor = None,
    after: paging.Cursor = None,
    limit: paging.Limit = None,
) -> Response:
    """Jobs awaiting a driver or on the road, oldest first; without parameters all of
    them. A board asks for a page (see services/paging.py): e.g.
    ``?stage=awaiting&stage=out&stage=delivered&finishedWithin=600&limit=100``, or the
    history ``?stage=delivered&order=latest&limit=20``."""
    window = paging.Window(stages=paging.stages_or(stage, jobs.ACTIVE),
                           finished_within=finished_within, order=order, before=before,
                           after=after, limit=limit)
    async with host.db.read() as conn:
        rows = await jobs.job_page(conn, window)
    rows = paging.trim(rows, limit, request, response, lambda row: row.order_id, order)
    return paging.answer([_job(row) for row in rows], request, response)


def _job(row: Any) -> Job:
    address = Address.model_validate(row.address) if row.address else None
    return Job(order_id=row.order_id, stage=row.stage, driver=row.driver, address=address)


@router.post("/api/delivery/jobs/{orderId}/out-for-delivery", status_code=202,
             response_model=StageChange,
             responses={400: {"description": "the body is not JSON"}, **REFUSALS},
             openapi_extra=route_causes(OrderOutForDeliveryV1))
async def out_for_delivery(order_id: OrderId, body: Driver, host: Host) -> StageChange:
    """A driver takes the order (the same driver again is harmless)."""
    async with host.unit_of_work() as ctx:
        await jobs.send_out_one(ctx, order_id, body.driver)
        ctx.on_commit(lambda: host.wake(simulation.STAFF))  # simulated drivers: due soon
    return StageChange(order_id=order_id, stage="out")


@router.post("/api/delivery/jobs/{orderId}/delivered", status_code=202,
             response_model=StageChange, responses=REFUSALS,
             openapi_extra=route_causes(OrderDeliveredV1))
async def delivered(order_id: OrderId, host: Host) -> StageChange:
    """The customer has the order (only once it is out; again is harmless)."""
    async with host.unit_of_work() as ctx:
        await jobs.deliver_one(ctx, order_id)
    return StageChange(order_id=order_id, stage="delivered")
