"""Our own loyalty ledger: one point per whole pound, once per order."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from pizza.eventing.storage import AsyncConnection, upsert
from pizza.services.loyalty.tables import balances, entries


def points_for(order_value: float) -> int:
    """One point per whole pound. Rounded to pence first, so a float such as 29.999999999
    from adding prices up counts as the £30.00 it means."""
    pence = max(0, round(order_value * 100))
    return pence // 100



async def record(conn: AsyncConnection, order_id: str, customer_id: str, points: int) -> bool:
    """Write the order's entry; False if it already has one (then nothing may change)."""
    statement = (
        upsert(conn, entries)
        .values(order_id=order_id, customer_id=customer_id, points=points,
                created_at=datetime.now(UTC))
        .on_conflict_do_nothing()
        .returning(entries.c.order_id)
    )
    return (await conn.execute(statement)).first() is not None


async def add(conn: AsyncConnection, customer_id: str, points: int) -> int:
    """Add points to the customer's running total; return the new balance."""
    insert = upsert(conn, balances).values(customer_id=customer_id, points=points)
    statement = insert.on_conflict_do_update(
        index_elements=[balances.c.customer_id],
        set_={"points": balances.c.points + insert.excluded.points},
    ).returning(balances.c.points)
    return int((await conn.execute(statement)).scalar_one())


async def balance(conn: AsyncConnection, customer_id: str) -> int:
    """The customer's points; 0 for a customer we never credited."""
    found = await conn.scalar(
        select(balances.c.points).where(balances.c.customer_id == customer_id))
    return int(found or 0)
