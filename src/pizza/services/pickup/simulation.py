"""The simulated counter (``--simulate``): every waiting order is collected after
``drive_seconds`` (the customer's trip to the shop takes as long as a driver's).

It presses the same button as a person does (``shelf.collect`` in a unit of work, for
every due order at once), so the simulation exercises the real path. One loop per
process polls the counter's own table; the conditional update in ``shelf`` makes several
processes harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pizza.eventing import Service
from pizza.services.pickup import shelf

POLL_SECONDS = 0.05  # how long an idle counter waits before looking again
BATCH = 200  # orders collected in one transaction


async def counter_round(service: Service, wait_seconds: float) -> bool:
    """Hand over every order that has waited long enough; True if there was any."""
    due = datetime.now(UTC) + timedelta(microseconds=1) - timedelta(seconds=wait_seconds)
    async with service.read() as conn:
        order_ids = await shelf.in_stage(conn, "waiting", changed_before=due, limit=BATCH)
    if not order_ids:
        return False
    async with service.unit_of_work() as ctx:
        await shelf.collect(ctx, order_ids)
    return True
