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

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pizza.config import settings
from pizza.services import staff_rest
from pizza.services.delivery import jobs, service
from pizza.services.delivery.tables import jobs as table

STAFF = "drivers"
BATCH = 200  # jobs moved in one transaction
DRIVERS = ("Asha", "Bertie", "Chidi", "Dominika", "Euan", "Fatima")


_rota: Iterator[str] = itertools.cycle(DRIVERS)


def wake() -> None:
    """A job was opened: the drivers look now (call after its commit)."""
    service.wake(STAFF)


@service.runs(STAFF, when=lambda: settings().simulate,
              idle_seconds=staff_rest.SAFETY_POLL_SECONDS)
async def _round() -> float:
    """Send the awaiting jobs out, then deliver those driven long enough; the seconds to
    rest (0 when a batch was full: look again at once)."""
    drive_seconds = settings().drive_seconds
    now = datetime.now(UTC)
    awaiting = await _due("awaiting", now)
    if awaiting:
        async with service.unit_of_work() as ctx:
            await jobs.send_out(ctx, {order_id: next(_rota) for order_id in awaiting})
    arrived = await _due("out", now + timedelta(microseconds=1)
                         - timedelta(seconds=drive_seconds))
    if arrived:
        async with service.unit_of_work() as ctx:
            await jobs.deliver(ctx, arrived)
    if BATCH in (len(awaiting), len(arrived)):
        return 0.0
    async with service.read() as conn:
        return await staff_rest.rest_before_due(conn, table, "out", drive_seconds,
                                                datetime.now(UTC))


async def _due(stage: jobs.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await jobs.in_stage(conn, stage, changed_before=changed_before, limit=BATCH)
