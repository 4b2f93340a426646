"""Simulated drivers (``--simulate``): take every awaiting job out, deliver it after
``drive_seconds``.

They press the same buttons as people do (``jobs.send_out`` / ``jobs.deliver`` in a unit
of work, for every due job at once), so the simulation exercises the real path. One
loop per process looks at delivery's own table when a new job wakes it (``wake``, after
the commit that opened it), when the oldest job out is due, and at least every
``staff_rest.SAFETY_POLL_SECONDS``; the conditional updates in ``jobs`` make several
processes (or a person clicking at the same time) harmless.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pizza.eventing import Service
from pizza.services import staff_rest
from pizza.services.delivery import jobs
from pizza.services.delivery.tables import jobs as table

STAFF = "drivers"
BATCH = 200  # jobs moved in one transaction
DRIVERS = ("Asha", "Bertie", "Chidi", "Dominika", "Euan", "Fatima")


async def drivers_round(service: Service, drive_seconds: float, rota: Iterator[str]) -> float:
    """Send the awaiting jobs out (drivers taken in turn from ``rota``), then deliver
    those driven long enough; the seconds to rest (0 when a batch was full: look again at
    once). ``create`` runs it as the job ``STAFF``."""
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
    if BATCH in (len(awaiting), len(arrived)):
        return 0.0
    async with service.read() as conn:
        return await staff_rest.rest_before_due(conn, table, "out", drive_seconds,
                                                datetime.now(UTC))


async def _due(service: Service, stage: jobs.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await jobs.in_stage(conn, stage, changed_before=changed_before, limit=BATCH)
