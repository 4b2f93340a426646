"""Tickets: what the kitchen cooks, and the only way their stage changes.

Both the HTTP routes and the simulated staff go through ``start`` and ``finish`` (a click
for one ticket, the simulation for many at once). Every change of stage is a conditional
UPDATE (``WHERE stage = <expected>``), so two clicks, two processes or a click racing the
simulation never publish the same event twice: only the statement that actually moved
the row publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Row, bindparam, select, update

from pizza.contracts.kitchen import OrderPreparedV1, OrderPreparingV1
from pizza.contracts.orders import OrderConfirmedV1
from pizza.eventing import Context
from pizza.eventing.errors import Conflict, NotFound
from pizza.eventing.storage import AsyncConnection, once_per_dialect, upsert
from pizza.services.kitchen.tables import tickets
from pizza.services.paging import Window, staged_page
from pizza.services.stories import remember_causes

Stage = Literal["new", "preparing", "prepared", "withdrawn"]
AnyRow = Row[*tuple[Any, ...]]
SHOWN: tuple[Stage, ...] = ("new", "preparing", "prepared")  # the list's stages
FINISHED: tuple[Stage, ...] = ("prepared",)  # done in the kitchen: drops off the board
# A cancelled order is withdrawn whatever the kitchen did with it, even a prepared one:
# orders accepted the cancellation before it heard of OrderPrepared, and orders is the
# authority (see orders/cancelling.py). The boxed pizza is not handed over.
WITHDRAWABLE = ("new", "preparing", "prepared")


class TicketNotFound(NotFound):
    """The kitchen holds no ticket for this order (yet)."""


class TicketRefused(Conflict):
    """The ticket's stage does not allow this step."""

    def __init__(self, code: str, message: str, stage: str) -> None:
        super().__init__(message, {"stage": stage}, code=code)
        self.stage = stage


def _now() -> datetime:
    return datetime.now(UTC)


async def open_ticket(ctx: Context, order: OrderConfirmedV1) -> bool:
    """Open a ticket for a confirmed order; False if one (or a tombstone) exists."""
    now = _now()
    items = [{"menuItemId": line.menu_item_id, "name": line.name, "quantity": line.quantity}
             for line in order.items]
    result = await ctx.db.execute(_OPEN(ctx.db), {
        "order_id": order.order_id, "items": items, "fulfilment": order.fulfilment,
        "delivery_id": order.delivery_id, "stage": "new", "correlation_id": ctx.story_id,
        "cause_id": ctx.cause.id if ctx.cause else None,
        "created_at": now, "updated_at": now})
    return bool(result.rowcount)


_OPEN = once_per_dialect(lambda conn: upsert(conn, tickets).on_conflict_do_nothing(
    index_elements=["order_id"]))


async def withdraw(ctx: Context, order_id: str) -> None:
    """Withdraw the ticket of a cancelled order, or leave a tombstone if it is not here
    yet (so a late confirmation opens nothing).

    One statement (insert, or on conflict update while still withdrawable), so a
    confirmation committing at the same moment cannot slip between a check and a write.
    """
    now = _now()
    insert = upsert(ctx.db, tickets).values(
        order_id=order_id, items=[], stage="withdrawn", correlation_id=ctx.story_id,
        created_at=now, updated_at=now,
    )
    await ctx.db.execute(insert.on_conflict_do_update(
        index_elements=["order_id"],
        set_={"stage": "withdrawn", "updated_at": now},
        where=tickets.c.stage.in_(WITHDRAWABLE),
    ))


async def start(ctx: Context, order_ids: Sequence[str]) -> list[str]:
    """Start cooking every one of these tickets that is new; the ones that started now.

    One statement for many tickets, so the simulated staff keep up under load.
    """
    moved = await _advance(ctx.db, order_ids, "new", "preparing")
    await remember_causes(ctx.db, tickets, {
        row.order_id: ctx.publish(OrderPreparingV1(order_id=row.order_id),
                                  correlation_id=row.correlation_id, caused_by=row.cause_id).id
        for row in moved})
    return [row.order_id for row in moved]


async def finish(ctx: Context, order_ids: Sequence[str]) -> list[str]:
    """Mark these tickets cooked and boxed; the ones that changed now.

    A ticket still "new" must have been cooked, so its OrderPreparing goes out first and
    the order's timeline has no gap.
    """
    await start(ctx, order_ids)
    moved = await _advance(ctx.db, order_ids, "preparing", "prepared")
    published = {}
    for row in moved:
        fulfilment = cast(Literal["delivery", "pickup"], row.fulfilment)
        published[row.order_id] = ctx.publish(
            OrderPreparedV1(order_id=row.order_id, fulfilment=fulfilment,
                            delivery_id=row.delivery_id),
            correlation_id=row.correlation_id, caused_by=row.cause_id).id
    await remember_causes(ctx.db, tickets, published)
    return [row.order_id for row in moved]



async def start_one(ctx: Context, order_id: str) -> bool:
    """Start one ticket (a click): True if now, False if already cooking, else refused."""
    if await start(ctx, [order_id]):
        return True
    await _explain(ctx.db, order_id, done="preparing")
    return False


async def finish_one(ctx: Context, order_id: str) -> bool:
    """Finish one ticket (a click): True if now, False if already prepared, else refused."""
    if await finish(ctx, [order_id]):
        return True
    await _explain(ctx.db, order_id, done="prepared")
    return False


async def _advance(conn: AsyncConnection, order_ids: Sequence[str], before: Stage,
                   after: Stage) -> Sequence[AnyRow]:
    """Move the tickets that are in ``before`` to ``after``; the rows that moved.

    A conditional UPDATE: two clicks, two processes or a click racing the simulation
    cannot both move a ticket, so its event is published once.
    """
    if not order_ids:
        return []
    result = await conn.execute(_ADVANCE, {"ids": list(order_ids), "before": before,
                                           "stage": after, "updated_at": _now()})
    return result.all()


_ADVANCE = (update(tickets)
            .where(tickets.c.order_id.in_(bindparam("ids", expanding=True)),
                   tickets.c.stage == bindparam("before"))
            .returning(tickets.c.order_id, tickets.c.correlation_id, tickets.c.fulfilment,
                       tickets.c.delivery_id, tickets.c.cause_id))


async def _explain(conn: AsyncConnection, order_id: str, done: Stage) -> None:
    """Nothing moved: fine if the ticket is already ``done`` (a repeat), else say why."""
    stage = await stage_of(conn, order_id)
    if stage == done:
        return
    if stage is None:
        raise TicketNotFound(f"no ticket for order {order_id}")
    if stage == "withdrawn":
        raise TicketRefused("ticket-withdrawn", f"order {order_id} was cancelled", stage)
    raise TicketRefused("wrong-stage", f"the ticket for order {order_id} is {stage}", stage)


async def stage_of(conn: AsyncConnection, order_id: str) -> str | None:
    result = await conn.execute(select(tickets.c.stage).where(tickets.c.order_id == order_id))
    return result.scalar_one_or_none()


async def ticket_page(conn: AsyncConnection, window: Window) -> list[AnyRow]:
    """A page of tickets (see services/paging.py); withdrawn ones are never listed."""
    shown = replace(window, stages=[s for s in window.stages if s in SHOWN],
                    finished=FINISHED)
    return await staged_page(conn, tickets, [
        tickets.c.order_id, tickets.c.stage, tickets.c["items"], tickets.c.fulfilment,
        tickets.c.created_at], shown)


async def in_stage(conn: AsyncConnection, stage: Stage, *, changed_before: datetime,
                   limit: int) -> list[str]:
    """Orders whose ticket has been in ``stage`` since before a moment, longest first."""
    result = await conn.execute(
        select(tickets.c.order_id)
        .where(tickets.c.stage == stage, tickets.c.updated_at <= changed_before)
        .order_by(tickets.c.updated_at)
        .limit(limit)
    )
    return list(result.scalars())
