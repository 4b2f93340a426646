"""Following one order's read model as it changes (what the SSE route sends).

How a change reaches a stream, cheaply and correctly:

* The hub rings after the transaction that changed the order has committed (the
  handler asks for that with ``ctx.on_commit``), so one re-read sees the change.
* Without a ring the stream still re-reads every ``store.poll_seconds``: that covers
  changes committed by another process on a shared PostgreSQL, where no in-process ring
  comes. With Redis the ring comes from the Redis channel, from whichever process wrote.

A stream sends documents, not deltas: if two changes commit between two reads it sends
the later document once. It ends after a final document (completed or cancelled).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pizza.services.tracking.hub import Hub
from pizza.services.tracking.projection import OrderView
from pizza.services.tracking.store import Store


async def follow(store: Store, hub: Hub, order_id: str) -> AsyncIterator[OrderView]:
    """The current document (once visible), then each changed one, until a final one."""
    last: OrderView | None = None
    with hub.listen(order_id) as signal:
        view = await store.get(order_id)
        while True:
            if view is not None and view.is_visible and view != last:
                last = view
                yield view
                if view.is_final:
                    return
            rung = await signal.wait(store.poll_seconds)
            pushed, signal.document = signal.document, None
            if pushed is not None and last is not None and (
                    len(pushed.timeline) < len(last.timeline)):
                pushed = None  # two commits' signals crossed (PostgreSQL): read instead
            view = pushed if rung and pushed is not None else await store.get(order_id)
