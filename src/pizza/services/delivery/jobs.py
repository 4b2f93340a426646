"""Delivery jobs: one per prepared delivery order, and the only way their stage changes.

The HTTP routes and the simulated drivers both go through ``send_out`` and ``deliver`` (a
click for one job, the simulation for many at once). Every change of stage is a
conditional UPDATE (``WHERE stage = <expected>``), so only the statement that actually
moved the job publishes: a double click, a second process or the simulation racing a
person never sends an event twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row, bindparam, select, update

from pizza.contracts.delivery import OrderDeliveredV1, OrderOutForDeliveryV1
from pizza.contracts.kitchen import OrderPreparedV1
from pizza.eventing import Context
from pizza.eventing.errors import Conflict, NotFound
from pizza.eventing.storage import AsyncConnection, once_per_dialect, upsert
from pizza.services.delivery import addresses
from pizza.services.delivery.tables import jobs
from pizza.services.paging import Window, staged_page
from pizza.services.stories import remember_causes

Stage = Literal["awaiting", "out", "delivered", "withdrawn"]
AnyRow = Row[*tuple[Any, ...]]
ACTIVE: tuple[Stage, ...] = ("awaiting", "out")
SHOWN: tuple[Stage, ...] = ("awaiting", "out", "delivered")  # what a list may ask for
FINISHED: tuple[Stage, ...] = ("delivered",)  # done: drops off the board


class JobNotFound(NotFound):
    """No delivery job for this order (yet, or it is not a delivery order)."""


class JobRefused(Conflict):
    """The job's stage does not allow this step."""

    def __init__(self, code: str, message: str, stage: str) -> None:
        super().__init__(message, {"stage": stage}, code=code)
        self.stage = stage


def _now() -> datetime:
    return datetime.now(UTC)


async def open_job(ctx: Context, prepared: OrderPreparedV1) -> bool:
    """Open a job for a prepared delivery order; pickup orders are not ours.

    The address is copied from our own table now. An unknown deliveryId still opens the
    job (with no address): the pizza exists and someone must decide what to do with it.
    """
    if prepared.fulfilment != "delivery":
        return False
    address = None
    if prepared.delivery_id is not None:
        address = await addresses.find(ctx.db, prepared.delivery_id)
    now = _now()
    result = await ctx.db.execute(_OPEN(ctx.db), {
        "order_id": prepared.order_id, "delivery_id": prepared.delivery_id,
        "address": address, "stage": "awaiting", "correlation_id": ctx.story_id,
        "cause_id": ctx.cause.id if ctx.cause else None, "created_at": now,
        "updated_at": now})
    return bool(result.rowcount)


_OPEN = once_per_dialect(lambda conn: upsert(conn, jobs).on_conflict_do_nothing(
    index_elements=["order_id"]))


async def withdraw(ctx: Context, order_id: str) -> None:
    """Withdraw the job of a cancelled order, or leave a tombstone if it is not here yet.

    A job already out is withdrawn too (the driver brings the order back; "delivered" is
    then refused): orders accepted the cancellation before it heard of OrderPrepared, and
    orders is the authority (see orders/cancelling.py). One statement, so an
    OrderPrepared committing at the same moment cannot slip between a check and a write.
    """
    now = _now()
    insert = upsert(ctx.db, jobs).values(
        order_id=order_id, stage="withdrawn", correlation_id=ctx.story_id,
        created_at=now, updated_at=now,
    )
    await ctx.db.execute(insert.on_conflict_do_update(
        index_elements=["order_id"],
        set_={"stage": "withdrawn", "updated_at": now},
        where=jobs.c.stage.in_(ACTIVE),
    ))


async def send_out(ctx: Context, drivers: Mapping[str, str]) -> list[str]:
    """Drivers leave with these orders ({orderId: driver}); the ones that left now.

    One statement per driver, so the simulated drivers keep up under load.
    """
    by_driver: dict[str, list[str]] = defaultdict(list)
    for order_id, driver in drivers.items():
        by_driver[driver].append(order_id)
    published: dict[str, str] = {}
    for driver, order_ids in by_driver.items():
        for row in await _advance(ctx.db, order_ids, "awaiting", "out", driver=driver):
            published[row.order_id] = ctx.publish(
                OrderOutForDeliveryV1(order_id=row.order_id, driver=driver),
                correlation_id=row.correlation_id, caused_by=row.cause_id).id
    await remember_causes(ctx.db, jobs, published)
    return list(published)


async def deliver(ctx: Context, order_ids: Sequence[str]) -> list[str]:
    """The drivers handed these orders over; the ones delivered now."""
    moved = await _advance(ctx.db, order_ids, "out", "delivered")
    await remember_causes(ctx.db, jobs, {
        row.order_id: ctx.publish(OrderDeliveredV1(order_id=row.order_id),
                                  correlation_id=row.correlation_id, caused_by=row.cause_id).id
        for row in moved})
    return [row.order_id for row in moved]


async def send_out_one(ctx: Context, order_id: str, driver: str) -> bool:
    """One driver takes one job (a click): True if now, False if that driver already had
    it, else refused."""
    if await send_out(ctx, {order_id: driver}):
        return True
    job = await _job(ctx.db, order_id)
    if job is not None and job.stage == "out":
        if job.driver == driver:
            return False
        raise JobRefused("wrong-stage",
                         f"{job.driver} is already delivering order {order_id}", job.stage)
    raise _refusal(order_id, job)


async def deliver_one(ctx: Context, order_id: str) -> bool:
    """One order handed over (a click): True if now, False if it already was, else
    refused."""
    if await deliver(ctx, [order_id]):
        return True
    job = await _job(ctx.db, order_id)
    if job is not None and job.stage == "delivered":
        return False
    raise _refusal(order_id, job)


async def _advance(conn: AsyncConnection, order_ids: Sequence[str], before: Stage,
                   after: Stage, **changes: Any) -> Sequence[AnyRow]:
    """Move the jobs that are in ``before`` to ``after``; the rows that moved.

    A conditional UPDATE: two clicks, two processes or a click racing the simulation
    cannot both move a job, so its event is published once.
    """
    if not order_ids:
        return []
    result = await conn.execute(_ADVANCE, {"ids": list(order_ids), "before": before,
                                           "stage": after, "updated_at": _now(), **changes})
    return result.all()


# The columns set are the parameters' (stage, updated_at and any ``changes``).
_ADVANCE = (update(jobs)
            .where(jobs.c.order_id.in_(bindparam("ids", expanding=True)),
                   jobs.c.stage == bindparam("before"))
            .returning(jobs.c.order_id, jobs.c.correlation_id, jobs.c.cause_id))


async def _job(conn: AsyncConnection, order_id: str) -> AnyRow | None:
    result = await conn.execute(
        select(jobs.c.stage, jobs.c.driver).where(jobs.c.order_id == order_id))
    return result.first()


def _refusal(order_id: str, job: AnyRow | None) -> Exception:
    if job is None:
        return JobNotFound(f"no delivery job for order {order_id}")
    if job.stage == "withdrawn":
        return JobRefused("job-withdrawn", f"order {order_id} was cancelled", job.stage)
    return JobRefused("wrong-stage", f"the delivery of order {order_id} is {job.stage}",
                      job.stage)


async def job_page(conn: AsyncConnection, window: Window) -> list[AnyRow]:
    """A page of jobs (see services/paging.py); withdrawn ones are never listed."""
    shown = replace(window, stages=[s for s in window.stages if s in SHOWN],
                    finished=FINISHED)
    return await staged_page(conn, jobs, [jobs.c.order_id, jobs.c.stage, jobs.c.driver,
                                          jobs.c.address], shown)


async def in_stage(conn: AsyncConnection, stage: Stage, *, changed_before: datetime,
                   limit: int) -> list[str]:
    """Orders whose job has been in ``stage`` since before a moment, longest first."""
    result = await conn.execute(
        select(jobs.c.order_id)
        .where(jobs.c.stage == stage, jobs.c.updated_at <= changed_before)
        .order_by(jobs.c.updated_at)
        .limit(limit)
    )
    return list(result.scalars())
