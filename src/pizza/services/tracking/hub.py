"""In-process signals "this order's read model may have changed", per order id.

A ring may carry the changed document: handlers ring after their transaction has
committed (``ctx.on_commit``), so what they computed is what is stored, and a stream can
send it without reading the store again. A ring from another process (the Redis channel)
carries none, and the stream reads. See ``follow``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any


class Signal:
    """One listener's doorbell: rung any number of times, answered once per wait."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.document: Any = None  # the latest committed document rung with, if any

    def ring(self, document: Any = None) -> None:
        self.document = document
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

    def notify(self, order_id: str, document: Any = None) -> None:
        for signal in self._listeners.get(order_id, ()):
            signal.ring(document)

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
