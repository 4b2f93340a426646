"""The running read model of one tracking service: its store (chosen at start) and its
change hub.

The service's factory makes one ``ReadModels`` and gives it to the handlers and adds its
``start``/``stop``/``clear`` to the service's hooks; handlers and routes reach the store
through its ``current()``. The store is set before the hook's first ``await``, so a
consumer that starts handling at once never finds it missing.

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


class ReadModels:
    """The read model of one tracking service while it runs: in its own database, or in
    Redis at ``redis_url``."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._current: ReadModel | None = None

    def current(self) -> ReadModel:
        if self._current is None:
            raise RuntimeError("the tracking service is not running")
        return self._current

    async def start(self, host: ServiceHost) -> None:
        hub = Hub()
        model = ReadModel(open_store(host.db, hub, self.redis_url), hub)
        self._current = model
        await model.store.start()

    async def stop(self, _host: ServiceHost) -> None:
        model, self._current = self._current, None
        if model is not None:
            await model.store.close()

    async def clear(self, host: ServiceHost) -> None:
        """Forget the read model, ready for a replay (the kernel forgets the inbox rows)."""
        running = self._current
        store = running.store if running is not None else open_store(host.db, Hub(),
                                                                      self.redis_url)
        await store.clear()
        if running is None:
            await store.close()
