"""The simulated counter (``--simulate``): every waiting order is collected after
``drive_seconds`` (the customer's trip to the shop takes as long as a driver's).

It presses the same button as a person does (``shelf.collect`` in a unit of work, for
every due order at once), so the simulation exercises the real path. One loop per
process looks at the counter's own table when an order put out wakes it (``wake``, after
the commit), when the oldest waiting order is due, and at least every
``staff_rest.SAFETY_POLL_SECONDS``; the conditional update in ``shelf`` makes several
processes harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pizza.eventing import Service
from pizza.services import staff_rest
from pizza.services.pickup import shelf
from pizza.services.pickup.tables import counter

STAFF = "pickup-counter"
BATCH = 200  # orders collected in one transaction


async def counter_round(service: Service, wait_seconds: float) -> float:
    """Hand over every order that has waited long enough; the seconds to rest (0 when
    the batch was full: look again at once). ``create`` runs it as the job ``STAFF``."""
    due = datetime.now(UTC) + timedelta(microseconds=1) - timedelta(seconds=wait_seconds)
    async with service.read() as conn:
        order_ids = await shelf.in_stage(conn, "waiting", changed_before=due, limit=BATCH)
    if order_ids:
        async with service.unit_of_work() as ctx:
            await shelf.collect(ctx, order_ids)
    if len(order_ids) == BATCH:
        return 0.0
    async with service.read() as conn:
        return await staff_rest.rest_before_due(conn, counter, "waiting", wait_seconds,
                                                datetime.now(UTC))
