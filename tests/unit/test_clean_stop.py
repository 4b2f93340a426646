"""A clean stop ends even when a background job swallows its cancellation: Python 3.11's
``asyncio.wait_for`` (used inside client libraries such as aiosmtplib) can lose a cancel
that arrives as its inner call ends, and the job then sleeps on as if nothing happened.
The notifications email sender did exactly that, and `pizza up` waited on it for ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pizza.eventing import Service, ServiceHost
from pizza.eventing.transport.memory import MemoryTransport


async def test_a_job_that_swallows_its_cancellation_does_not_hold_up_the_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    service = Service("stubborn")
    swallowed: list[str] = []
    started = asyncio.Event()

    @service.runs("swallower", idle_seconds=0.0)
    async def swallower() -> bool:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append("once")  # as a library that loses the cancel would
        await asyncio.sleep(3600)  # then carries on, e.g. backing off from a server
        return True

    host = ServiceHost(service, MemoryTransport(), relay_interval=0.05)
    await host.start()
    await started.wait()
    background = list(host._background)
    # Hangs for an hour without the fix; the bound only turns a hang into a failure.
    await asyncio.wait_for(host.stop(timeout=10.0), 30)
    assert swallowed == ["once"]
    assert all(task.done() for task in background)
