"""How long the simulated staff (kitchen, drivers, counter) may rest before their next
round: until their next known due time, at most a safety poll.

Their rounds no longer poll every 50 ms. The handler that gives them work (opens a
ticket, a job, a row at the counter) wakes them after its commit (``Service.wake``);
otherwise they sleep until the oldest row of the stage they wait on is due (its
``updated_at`` plus cook or drive seconds). The safety poll covers what no wake-up can
announce: rows written by another process (several processes on one PostgreSQL, a
process that restarted with rows in hand), a click that started a ticket while the staff
were resting, a wake-up lost for any reason. Nothing is ever stuck for longer than it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Table, func, select

from pizza.eventing.storage import AsyncConnection

SAFETY_POLL_SECONDS = 1.0  # the longest rest, whatever the table says


async def rest_before_due(conn: AsyncConnection, table: Table, stage: str,
                          after_seconds: float, now: datetime) -> float:
    """Seconds from ``now`` until the oldest row in ``stage`` has been there
    ``after_seconds`` (0 if it has), at most the safety poll (also when there is none)."""
    oldest = await conn.scalar(select(func.min(table.c.updated_at))
                               .where(table.c.stage == stage))
    if oldest is None:
        return SAFETY_POLL_SECONDS
    if oldest.tzinfo is None:  # SQLite keeps no zone: stored as UTC
        oldest = oldest.replace(tzinfo=UTC)
    due_in = (oldest - now).total_seconds() + after_seconds
    return min(SAFETY_POLL_SECONDS, max(0.0, due_in))
