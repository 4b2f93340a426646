"""Our own loyalty ledger: one point per whole pound, once per order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from pizza.eventing.storage import AsyncConnection, once_per_dialect, upsert
from pizza.services.loyalty.tables import balances, entries


def points_for(order_value: float) -> int:
    """One point per whole pound. Rounded to pence first, so a float such as 29.999999999
    from adding prices up counts as the £30.00 it means."""
    pence = max(0, round(order_value * 100))
    return pence // 100



async def record(conn: AsyncConnection, order_id: str, customer_id: str, points: int) -> bool:
    """Write the order's entry; False if it already has one (then nothing may change)."""
    result = await conn.execute(_RECORD(conn), {
        "order_id": order_id, "customer_id": customer_id, "points": points,
        "created_at": datetime.now(UTC)})
    return result.first() is not None


_RECORD = once_per_dialect(lambda conn: upsert(conn, entries).on_conflict_do_nothing()
                           .returning(entries.c.order_id))


async def add(conn: AsyncConnection, customer_id: str, points: int) -> int:
    """Add points to the customer's running total; return the new balance."""
    result = await conn.execute(_ADD(conn), {"customer_id": customer_id, "points": points})
    return int(result.scalar_one())


def _adding(conn: AsyncConnection) -> Any:
    insert = upsert(conn, balances)
    return insert.on_conflict_do_update(
        index_elements=[balances.c.customer_id],
        set_={"points": balances.c.points + insert.excluded.points},
    ).returning(balances.c.points)


_ADD = once_per_dialect(_adding)


async def balance(conn: AsyncConnection, customer_id: str) -> int:
    """The customer's points; 0 for a customer we never credited."""
    found = await conn.scalar(
        select(balances.c.points).where(balances.c.customer_id == customer_id))
    return int(found or 0)
