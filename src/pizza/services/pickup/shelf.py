"""Orders on the pickup shelf, and the only way their stage changes.

The HTTP route and the simulated counter both go through ``collect`` (a click for one
order, the simulation for many at once). It is a conditional UPDATE (``WHERE stage =
'waiting'``), so only the statement that moved an order publishes OrderCollected,
however many clicks or processes race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row, bindparam, select, update

from pizza.contracts.kitchen import OrderPreparedV1
from pizza.contracts.pickup import OrderCollectedV1, OrderReadyForCollectionV1
from pizza.eventing import Context
from pizza.eventing.errors import Conflict, NotFound
from pizza.eventing.storage import AsyncConnection, once_per_dialect, upsert
from pizza.services.paging import Window, staged_page
from pizza.services.pickup.tables import counter
from pizza.services.stories import remember_causes

Stage = Literal["waiting", "collected", "withdrawn"]
AnyRow = Row[*tuple[Any, ...]]
SHOWN: tuple[Stage, ...] = ("waiting", "collected")  # what a list may ask for
FINISHED: tuple[Stage, ...] = ("collected",)  # done: drops off the board


class OrderNotFound(NotFound):
    """Nothing on the shelf for this order (yet, or it is a delivery order)."""


class CollectionRefused(Conflict):
    """The order's stage does not allow collecting it."""

    def __init__(self, code: str, message: str, stage: str) -> None:
        super().__init__(message, {"stage": stage}, code=code)
        self.stage = stage


def _now() -> datetime:
    return datetime.now(UTC)


async def put_out(ctx: Context, prepared: OrderPreparedV1) -> bool:
    """Put a prepared pickup order on the shelf and say so; delivery orders are not ours.

    Announced only when the row is new, so a repeated OrderPrepared (or one that comes
    after a cancellation's tombstone) announces nothing.
    """
    if prepared.fulfilment != "pickup":
        return False
    now = _now()
    result = await ctx.db.execute(_SHELVE(ctx.db), {
        "order_id": prepared.order_id, "stage": "waiting", "correlation_id": ctx.story_id,
        "created_at": now, "updated_at": now})
    if not result.rowcount:
        return False
    ready = ctx.publish(OrderReadyForCollectionV1(order_id=prepared.order_id))
    await remember_causes(ctx.db, counter, {prepared.order_id: ready.id})
    return True


_SHELVE = once_per_dialect(lambda conn: upsert(conn, counter).on_conflict_do_nothing(
    index_elements=["order_id"]))


async def withdraw(ctx: Context, order_id: str) -> None:
    """Take a cancelled order off the shelf, or leave a tombstone if it is not here yet.

    Whichever comes first, OrderPrepared or OrderCancelled, the order ends withdrawn:
    orders is the authority on a cancellation (see orders/cancelling.py).

    One statement, so an OrderPrepared committing at the same moment cannot slip between
    a check and a write.
    """
    now = _now()
    insert = upsert(ctx.db, counter).values(
        order_id=order_id, stage="withdrawn", correlation_id=ctx.story_id,
        created_at=now, updated_at=now,
    )
    await ctx.db.execute(insert.on_conflict_do_update(
        index_elements=["order_id"],
        set_={"stage": "withdrawn", "updated_at": now},
        where=counter.c.stage == "waiting",
    ))


async def collect(ctx: Context, order_ids: Sequence[str]) -> list[str]:
    """Customers took these orders; the ones collected now (one statement for all)."""
    if not order_ids:
        return []
    result = await ctx.db.execute(_COLLECT, {"ids": list(order_ids), "updated_at": _now()})
    moved = result.all()
    await remember_causes(ctx.db, counter, {
        row.order_id: ctx.publish(OrderCollectedV1(order_id=row.order_id),
                                  correlation_id=row.correlation_id, caused_by=row.cause_id).id
        for row in moved})
    return [row.order_id for row in moved]


_COLLECT = (update(counter)
            .where(counter.c.order_id.in_(bindparam("ids", expanding=True)),
                   counter.c.stage == "waiting")
            .values(stage="collected")
            .returning(counter.c.order_id, counter.c.correlation_id, counter.c.cause_id))


async def collect_one(ctx: Context, order_id: str) -> bool:
    """One order collected (a click): True if now, False if it already was, else
    refused."""
    if await collect(ctx, [order_id]):
        return True
    stage = (await ctx.db.execute(
        select(counter.c.stage).where(counter.c.order_id == order_id))).scalar_one_or_none()
    if stage == "collected":
        return False
    if stage is None:
        raise OrderNotFound(f"no pickup order {order_id} at the counter")
    raise CollectionRefused("order-withdrawn", f"order {order_id} was cancelled", stage)


async def shelf_page(conn: AsyncConnection, window: Window) -> list[AnyRow]:
    """A page of the counter's orders (see services/paging.py); withdrawn ones are never
    listed."""
    shown = replace(window, stages=[s for s in window.stages if s in SHOWN],
                    finished=FINISHED)
    return await staged_page(conn, counter, [counter.c.order_id, counter.c.stage], shown)


async def in_stage(conn: AsyncConnection, stage: Stage, *, changed_before: datetime,
                   limit: int) -> list[str]:
    """Orders in ``stage`` since before a moment, longest first."""
    result = await conn.execute(
        select(counter.c.order_id)
        .where(counter.c.stage == stage, counter.c.updated_at <= changed_before)
        .order_by(counter.c.updated_at)
        .limit(limit)
    )
    return list(result.scalars())
