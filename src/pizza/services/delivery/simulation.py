"""Simulated drivers (``--simulate``): take every awaiting job out, deliver it after
``drive_seconds``.

They press the same buttons as people do (``jobs.send_out`` / ``jobs.deliver`` in a unit
of work, for every due job at once), so the simulation exercises the real path. One
loop per process polls delivery's own table; the conditional updates in ``jobs`` make
several processes (or a person clicking at the same time) harmless.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pizza.eventing import Service
from pizza.services.delivery import jobs

POLL_SECONDS = 0.05  # how long idle drivers wait before looking again
BATCH = 200  # jobs moved in one transaction
DRIVERS = ("Asha", "Bertie", "Chidi", "Dominika", "Euan", "Fatima")


async def drivers_round(service: Service, drive_seconds: float, rota: Iterator[str]) -> bool:
    """Send the awaiting jobs out (drivers taken in turn from ``rota``), then deliver
    those driven long enough."""
    now = datetime.now(UTC)
    awaiting = await _due(service, "awaiting", now)
    if awaiting:
        async with service.unit_of_work() as ctx:
            await jobs.send_out(ctx, {order_id: next(rota) for order_id in awaiting})
    arrived = await _due(service, "out", now + timedelta(microseconds=1)
                         - timedelta(seconds=drive_seconds))
    if arrived:
        async with service.unit_of_work() as ctx:
            await jobs.deliver(ctx, arrived)
    return bool(awaiting or arrived)


async def _due(service: Service, stage: jobs.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await jobs.in_stage(conn, stage, changed_before=changed_before, limit=BATCH)
