"""In-process signals "this order's read model may have changed", per order id.

A signal carries no document on purpose: a handler's write is not committed when the
handler returns (the kernel commits the batch afterwards, and may roll it back), so a
listener re-reads the store instead of trusting what the handler computed. See
``follow`` for how a stream turns these hints into documents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Signal:
    """One listener's doorbell: rung any number of times, answered once per wait."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if rung (since the last wait) within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Hub:
    def __init__(self) -> None:
        self._listeners: dict[str, set[Signal]] = {}

    def notify(self, order_id: str) -> None:
        for signal in self._listeners.get(order_id, ()):
            signal.ring()

    def listeners(self, order_id: str) -> int:
        return len(self._listeners.get(order_id, ()))

    @contextlib.contextmanager
    def listen(self, order_id: str) -> Iterator[Signal]:
        signal = Signal()
        self._listeners.setdefault(order_id, set()).add(signal)
        try:
            yield signal
        finally:
            listeners = self._listeners.get(order_id, set())
            listeners.discard(signal)
            if not listeners:
                self._listeners.pop(order_id, None)
