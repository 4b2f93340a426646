"""The running read model: its store (chosen at start) and its change hub.

Handlers and routes reach the store through ``current()``. The store is set before the
hook's first ``await``, so a consumer that starts handling at once never finds it
missing.

Rebuilding from history (``pizza replay tracking``) is: ``clear(host)`` here, then
recreate this service's durable queues from the start of the streams: the kernel's
``ServiceHost.replay()`` does that, forgets the inbox rows, and calls ``clear`` as the
service's ``on_replay`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pizza.eventing import ServiceHost
from pizza.services.tracking.hub import Hub
from pizza.services.tracking.store import Store, open_store


@dataclass
class ReadModel:
    store: Store
    hub: Hub = field(default_factory=Hub)


_current: ReadModel | None = None


def current() -> ReadModel:
    if _current is None:
        raise RuntimeError("the tracking service is not running")
    return _current


async def start(host: ServiceHost) -> None:
    global _current
    hub = Hub()
    model = ReadModel(open_store(host.db, hub), hub)
    _current = model
    await model.store.start()


async def stop(_host: ServiceHost) -> None:
    global _current
    model, _current = _current, None
    if model is not None:
        await model.store.close()


async def clear(host: ServiceHost) -> None:
    """Forget the read model, ready for a replay (the kernel forgets the inbox rows)."""
    hub = Hub()
    store = _current.store if _current is not None else open_store(host.db, hub)
    await store.clear()
    if _current is None:
        await store.close()
