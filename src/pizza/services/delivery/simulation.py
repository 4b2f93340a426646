"""Simulated drivers (``--simulate``): take every awaiting job out, deliver it after
``drive_seconds``.

They press the same buttons as people do (``jobs.send_out`` / ``jobs.deliver`` in a unit
of work, for every due job at once), so the simulation exercises the real path. One
loop per process polls delivery's own table; the conditional updates in ``jobs`` make
several processes (or a person clicking at the same time) harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pizza.config import settings
from pizza.eventing import ServiceHost
from pizza.services.delivery import jobs, service

log = logging.getLogger("pizza.delivery.simulation")

POLL_SECONDS = 0.05  # how long idle drivers wait before looking again
BATCH = 200  # jobs moved in one transaction
PAUSE_AFTER_ERROR = 1.0
DRIVERS = ("Asha", "Bertie", "Chidi", "Dominika", "Euan", "Fatima")

_task: asyncio.Task[None] | None = None


async def start(_host: ServiceHost) -> None:
    global _task
    if settings().simulate and _task is None:
        _task = asyncio.create_task(_work(settings().drive_seconds), name="drivers")


async def stop(_host: ServiceHost) -> None:
    global _task
    task, _task = _task, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _work(drive_seconds: float) -> None:
    """Until cancelled: do what is due, and rest only when nothing was."""
    rota = itertools.cycle(DRIVERS)
    while True:
        try:
            busy = await _round(drive_seconds, rota)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the simulated drivers tripped; carrying on")
            await asyncio.sleep(PAUSE_AFTER_ERROR)
            continue
        if not busy:
            await asyncio.sleep(POLL_SECONDS)


async def _round(drive_seconds: float, rota: Iterator[str]) -> bool:
    """Send the awaiting jobs out, then deliver those driven long enough."""
    now = datetime.now(UTC)
    awaiting = await _due("awaiting", now)
    if awaiting:
        async with service.unit_of_work() as ctx:
            await jobs.send_out(ctx, {order_id: next(rota) for order_id in awaiting})
    arrived = await _due("out", now + timedelta(microseconds=1)
                         - timedelta(seconds=drive_seconds))
    if arrived:
        async with service.unit_of_work() as ctx:
            await jobs.deliver(ctx, arrived)
    return bool(awaiting or arrived)


async def _due(stage: jobs.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await jobs.in_stage(conn, stage, changed_before=changed_before, limit=BATCH)
