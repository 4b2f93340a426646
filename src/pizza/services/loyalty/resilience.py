"""Two guards for calling someone else's service: a circuit breaker and a rate limiter.

Both are per process and in memory: they protect this process's callers and the
supplier from this process. With several processes each keeps its own; the supplier's
own limit (and its 429s, which we honour) is what holds across all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half-open"]


@dataclass
class CircuitBreaker:
    """After ``failure_threshold`` failures in a row, refuse calls for ``cool_down``
    seconds, so a supplier in trouble is not hammered and our callers fail fast. Then one
    trial call goes through (half-open): success closes the circuit, failure opens it
    again for another cool-down."""

    failure_threshold: int = 5
    cool_down: float = 30.0
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at < self.cool_down:
            return "open"
        return "half-open"

    def retry_in(self) -> float:
        """Seconds until the circuit lets a trial call through (0 when it would now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cool_down - self.clock())

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def failed(self) -> None:
        self.trial_in_flight = False
        self.failures += 1
        # A failed trial re-opens at once; a closed circuit opens at the threshold.
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()


@dataclass
class TokenBucket:
    """At most ``rate`` calls a second, and a pause when the supplier tells us to wait
    (a 429's Retry-After). ``rate <= 0`` means no limit of our own.

    Any one second sees at most ``burst + rate`` calls. A supplier's limit is usually
    counted that way (per sliding second), so the burst defaults to a single call: calls
    are spaced evenly and ``rate`` just under their limit keeps us clear of their 429s.
    """

    rate: float
    burst: float = 1.0
    clock: Clock = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)
    paused_until: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.burst = max(1.0, self.burst)
        self.tokens = self.burst
        self.updated = self.clock()

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (they asked us to wait)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def _reserve(self) -> float:
        """Take a token (the count may go below zero: a reservation); return the wait."""
        now = self.clock()
        pause = max(0.0, self.paused_until - now)
        if self.rate <= 0:
            return pause
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return max(pause, -self.tokens / self.rate)

    async def acquire(self, max_wait: float) -> float | None:
        """Wait for our turn, if it comes within ``max_wait`` seconds.

        Returns None once the call may go, or the wait that was too long (nothing taken).
        """
        wait = self._reserve()
        if wait > max_wait:
            if self.rate > 0:
                self.tokens += 1.0  # give the reservation back
            return wait
        if wait > 0:
            await asyncio.sleep(wait)
        return None
