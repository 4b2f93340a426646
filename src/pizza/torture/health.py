"""Every ~0.25 s, ask each process that should be up for /api/health and time the answer.

The asking runs on an event loop of its own, in a thread of its own: the torture's
customers keep the driver's loop busy with hundreds of requests, and a health answer
timed there would count the driver's own wait for its loop as the system's slowness
(seen: 1.8 s "health" at a load average of 3, when the process answered in well under
one). The watch's figures are written by that thread only, and read after it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from pizza.torture.processes import Fleet, PizzaProcess

INTERVAL = 0.25
TIMEOUT = 5.0


@dataclass
class HealthWatch:
    slowest: float = 0.0
    slowest_at: str = ""
    asked: int = 0
    failures: int = 0         # no answer, or neither 200 nor 503, from a process meant to be up
    degraded: int = 0         # 503 answers (a dependency is away): an answer, not a failure
    last_failure: str = ""

    async def _ask(self, http: httpx.AsyncClient, process: PizzaProcess) -> None:
        label, starts = process.label, process.starts
        started = time.perf_counter()
        try:
            response = await http.get(f"{process.url}/api/health")
            failure = (None if response.status_code in (200, 503)
                       else f"answered {response.status_code}")
            if response.status_code == 503:  # an answer: "degraded, a dependency is away"
                self.degraded += 1
        except httpx.HTTPError as error:
            failure = type(error).__name__
        elapsed = time.perf_counter() - started
        if not process.expected_up or process.starts != starts:
            return  # killed on purpose while we asked
        self.asked += 1
        if elapsed > self.slowest:
            self.slowest, self.slowest_at = elapsed, label
        if failure:
            self.failures += 1
            self.last_failure = f"{label}: {failure}"


@contextlib.asynccontextmanager
async def watching(fleet: Fleet) -> AsyncIterator[HealthWatch]:
    """Watch while the body runs; a process being killed or restarted is not asked."""
    watch = HealthWatch()
    stop = threading.Event()

    async def loop() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            while not stop.is_set():
                tick = time.perf_counter()
                asks = [watch._ask(http, p) for p in list(fleet.processes)
                        if p.expected_up]
                await asyncio.gather(*asks)
                await asyncio.sleep(max(0.0, INTERVAL - (time.perf_counter() - tick)))

    thread = threading.Thread(target=asyncio.run, args=(loop(),), name="health-watch",
                              daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, TIMEOUT + INTERVAL + 1.0)
