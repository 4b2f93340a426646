"""Following one order's read model as it changes (what the SSE route sends).

How a change reaches a stream, cheaply and correctly:

* The hub rings after the transaction that changed the order has committed (the
  handler asks for that with ``ctx.on_commit``), so one re-read sees the change.
* Without a ring the stream still re-reads every ``store.poll_seconds``: that covers
  changes committed by another process on a shared PostgreSQL, where no in-process ring
  comes. With Redis the ring comes from the Redis channel, from whichever process wrote.

A stream sends documents, not deltas: if two changes commit between two reads it sends
the later document once. It ends after a cancelled document, or a completed one with its
loyalty points (or ``POINTS_GRACE`` seconds after completion without them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pizza.services.tracking.hub import Hub
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.store import Store

POINTS_GRACE = 10.0


async def follow(store: Store, hub: Hub, order_id: str) -> AsyncIterator[OrderView]:
    """The current document (once visible), then each changed one, until a final one.

    A completed order still earns its loyalty points a moment later (another service,
    another event): the stream waits up to ``POINTS_GRACE`` seconds for them.
    """
    loop = asyncio.get_running_loop()
    last: OrderView | None = None
    ends_at: float | None = None
    with hub.listen(order_id) as signal:
        view = await store.get(order_id)
        while True:
            if view is not None and view.is_visible and view != last:
                last = view
                yield view
                if view.status == "cancelled" or (view.is_final and
                                                  view.loyalty_points is not None):
                    return
                if view.is_final and ends_at is None:
                    ends_at = loop.time() + POINTS_GRACE
            wait = store.poll_seconds
            if ends_at is not None:
                wait = ends_at - loop.time()
                if wait <= 0:
                    return
            rung = await signal.wait(wait)
            pushed, signal.document = signal.document, None
            if pushed is not None and last is not None and (
                    len(pushed.timeline) < len(last.timeline)):
                pushed = None  # two commits' signals crossed (PostgreSQL): read instead
            view = pushed if rung and pushed is not None else await store.get(order_id)
