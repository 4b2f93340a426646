"""Following one order's read model as it changes (what the SSE route sends).

How a change reaches a stream, cheaply and correctly:

* The hub rings when a handler changed the order. With the SQL store the ring comes
  before the kernel commits the handler's transaction, so the stream re-reads every
  ``SETTLE`` seconds for up to ``SETTLE_FOR`` seconds until the committed document shows
  the change (a rolled-back change simply never shows).
* Without any ring the stream still re-reads every ``POLL`` seconds: that covers changes
  made by another process on a shared PostgreSQL, where no in-process ring comes.
  With Redis the ring comes from the Redis channel, from whichever process wrote.

A stream sends documents, not deltas: if two changes commit between two reads it sends
the later document once. It ends after a final document (completed or cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pizza.services.tracking.hub import Hub
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.store import Store

POLL = 1.0
SETTLE = 0.02
SETTLE_FOR = 2.0


async def follow(store: Store, hub: Hub, order_id: str) -> AsyncIterator[OrderView]:
    """The current document (once visible), then each changed one, until a final one."""
    loop = asyncio.get_running_loop()
    last: OrderView | None = None
    expect_until = 0.0  # a ring came: a change is on its way until then
    with hub.listen(order_id) as signal:
        while True:
            view = await store.get(order_id)
            if view is not None and view.is_visible and view != last:
                last, expect_until = view, 0.0
                yield view
                if view.is_final:
                    return
            waiting = SETTLE if loop.time() < expect_until else POLL
            if await signal.wait(waiting):
                expect_until = loop.time() + SETTLE_FOR
