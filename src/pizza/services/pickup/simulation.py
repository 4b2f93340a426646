"""The simulated counter (``--simulate``): every waiting order is collected after
``drive_seconds`` (the customer's trip to the shop takes as long as a driver's).

It presses the same button as a person does (``shelf.collect`` in a unit of work, for
every due order at once), so the simulation exercises the real path. One loop per
process polls the counter's own table; the conditional update in ``shelf`` makes several
processes harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from pizza.config import settings
from pizza.eventing import ServiceHost
from pizza.services.pickup import service, shelf

log = logging.getLogger("pizza.pickup.simulation")

POLL_SECONDS = 0.05  # how long an idle counter waits before looking again
BATCH = 200  # orders collected in one transaction
PAUSE_AFTER_ERROR = 1.0

_task: asyncio.Task[None] | None = None


async def start(_host: ServiceHost) -> None:
    global _task
    if settings().simulate and _task is None:
        _task = asyncio.create_task(_work(settings().drive_seconds), name="pickup-counter")


async def stop(_host: ServiceHost) -> None:
    global _task
    task, _task = _task, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _work(wait_seconds: float) -> None:
    """Until cancelled: hand over what is due, and rest only when nothing was."""
    while True:
        try:
            busy = await _round(wait_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the simulated counter tripped; carrying on")
            await asyncio.sleep(PAUSE_AFTER_ERROR)
            continue
        if not busy:
            await asyncio.sleep(POLL_SECONDS)


async def _round(wait_seconds: float) -> bool:
    """Hand over every order that has waited long enough; True if there was any."""
    due = datetime.now(UTC) + timedelta(microseconds=1) - timedelta(seconds=wait_seconds)
    async with service.read() as conn:
        order_ids = await shelf.in_stage(conn, "waiting", changed_before=due, limit=BATCH)
    if not order_ids:
        return False
    async with service.unit_of_work() as ctx:
        await shelf.collect(ctx, order_ids)
    return True
