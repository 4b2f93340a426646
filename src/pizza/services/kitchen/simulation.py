"""Simulated kitchen staff (``--simulate``): start every new ticket, finish it after
``cook_seconds``.

They press the same buttons as people do (``tickets.start`` / ``tickets.finish`` in a
unit of work, for every due ticket at once), so the simulation exercises the real path.
One loop per process polls the kitchen's own table; the conditional updates in
``tickets`` make several processes (or a person clicking at the same time) harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from pizza.config import settings
from pizza.eventing import Context, ServiceHost
from pizza.services.kitchen import service, tickets

log = logging.getLogger("pizza.kitchen.simulation")

POLL_SECONDS = 0.05  # how long an idle kitchen waits before looking again
BATCH = 200  # tickets moved in one transaction
PAUSE_AFTER_ERROR = 1.0

_task: asyncio.Task[None] | None = None


async def start(_host: ServiceHost) -> None:
    global _task
    if settings().simulate and _task is None:
        _task = asyncio.create_task(_work(settings().cook_seconds), name="kitchen-staff")


async def stop(_host: ServiceHost) -> None:
    global _task
    task, _task = _task, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _work(cook_seconds: float) -> None:
    """Until cancelled: do what is due, and rest only when nothing was."""
    while True:
        try:
            busy = await _round(cook_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the simulated kitchen staff tripped; carrying on")
            await asyncio.sleep(PAUSE_AFTER_ERROR)
            continue
        if not busy:
            await asyncio.sleep(POLL_SECONDS)


async def _round(cook_seconds: float) -> bool:
    """Start the new tickets, then finish those cooked long enough; True if any moved."""
    now = datetime.now(UTC)
    started = await _press(tickets.start, await _due("new", now))
    cooked = now + timedelta(microseconds=1) - timedelta(seconds=cook_seconds)
    finished = await _press(tickets.finish, await _due("preparing", cooked))
    return bool(started or finished)


async def _due(stage: tickets.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await tickets.in_stage(conn, stage, changed_before=changed_before,
                                      limit=BATCH)


async def _press(button: Callable[[Context, Sequence[str]], Awaitable[list[str]]],
                 order_ids: list[str]) -> int:
    """Press one button for many tickets in one short transaction; tickets that changed
    since we looked (e.g. cancelled) are simply not moved."""
    if not order_ids:
        return 0
    async with service.unit_of_work() as ctx:
        await button(ctx, order_ids)
    return len(order_ids)
