"""What a staff service's row remembers of its order's story, so that an event a person
starts (a click on a ticket, a job, an order at the counter) names its cause.

A handler's event has a cause by itself: the message being handled. A click has none;
its event would start a story of its own on ``/events``. So each row keeps ``cause_id``,
the newest message of its story (the one that opened it, then each event it published),
and the next event is published with ``caused_by=row.cause_id``: the order's picture
reads OrderConfirmed → OrderPreparing → OrderPrepared → OrderOutForDelivery → ...
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def remember_causes(conn: AsyncConnection, table: Table,
                          published: Mapping[str, str]) -> None:
    """Set ``cause_id`` of each row (by ``order_id``) to the id of the event it just
    published, the cause of its next; one statement for them all."""
    if published:
        await conn.execute(
            update(table).where(table.c.order_id == bindparam("row_order_id"))
            .values(cause_id=bindparam("row_cause_id")),
            [{"row_order_id": order_id, "row_cause_id": message_id}
             for order_id, message_id in published.items()])
