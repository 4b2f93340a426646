"""How late the event loop runs: a task sleeps 0.1 s and measures by how much it overslept.

Every service of a process shares one event loop, so a statement that blocks it (a busy
wait on a lock, a heavy query run inline) stalls HTTP, consumers and acks alike. The
largest recent overshoot is what ``GET /api/health`` reports as ``loopLagMs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class LoopLag:
    def __init__(self, interval: float = 0.1, window: float = 60.0) -> None:
        self.interval = interval
        self.window = window
        self.last = 0.0  # seconds late, at the last tick
        self._current = 0.0  # largest in this half of the window
        self._previous = 0.0  # largest in the half before
        self._turned_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def recent_max(self) -> float:
        """The largest lag, in seconds, over the last ``window`` (at least half of it)."""
        return max(self._current, self._previous)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        self._turned_at = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.record(max(0.0, now - before - self.interval), now)

    def record(self, lag: float, now: float) -> None:
        if now - self._turned_at >= self.window / 2:
            self._previous, self._current = self._current, 0.0
            self._turned_at = now
        self.last = lag
        self._current = max(self._current, lag)
