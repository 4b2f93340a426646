"""Simulated kitchen staff (``--simulate``): start every new ticket, finish it after
``cook_seconds``.

They press the same buttons as people do (``tickets.start`` / ``tickets.finish`` in a
unit of work, for every due ticket at once), so the simulation exercises the real path.
One loop per process looks at the kitchen's own table when a new ticket wakes it
(``wake``, after the commit that opened it), when the oldest ticket being cooked is due,
and at least every ``staff_rest.SAFETY_POLL_SECONDS``; the conditional updates in
``tickets`` make several processes (or a person clicking at the same time) harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from pizza.eventing import Context, Service
from pizza.services import staff_rest
from pizza.services.kitchen import tickets
from pizza.services.kitchen.tables import tickets as table

STAFF = "kitchen-staff"
BATCH = 200  # tickets moved in one transaction


async def staff_round(service: Service, cook_seconds: float) -> float:
    """Start the new tickets, then finish those cooked long enough; the seconds to rest
    (0 when a batch was full: look again at once). ``create`` runs it in a loop as the
    job ``STAFF`` with the service and its settings' cook_seconds."""
    now = datetime.now(UTC)
    started = await _press(service, tickets.start, await _due(service, "new", now))
    cooked = now + timedelta(microseconds=1) - timedelta(seconds=cook_seconds)
    finished = await _press(service, tickets.finish,
                            await _due(service, "preparing", cooked))
    if BATCH in (started, finished):
        return 0.0
    async with service.read() as conn:
        return await staff_rest.rest_before_due(conn, table, "preparing", cook_seconds,
                                                datetime.now(UTC))


async def _due(service: Service, stage: tickets.Stage, changed_before: datetime) -> list[str]:
    async with service.read() as conn:
        return await tickets.in_stage(conn, stage, changed_before=changed_before,
                                      limit=BATCH)


async def _press(service: Service,
                 button: Callable[[Context, Sequence[str]], Awaitable[list[str]]],
                 order_ids: list[str]) -> int:
    """Press one button for many tickets in one short transaction; tickets that changed
    since we looked (e.g. cancelled) are simply not moved."""
    if not order_ids:
        return 0
    async with service.unit_of_work() as ctx:
        await button(ctx, order_ids)
    return len(order_ids)
