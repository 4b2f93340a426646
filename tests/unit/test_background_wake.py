"""A service's background job rests as long as it says (e.g. until its next due time)
and no longer than until ``Service.wake`` says work arrived: the simulated staff sleep
instead of polling, and a new ticket still gets cooked at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pizza.eventing import Service, ServiceHost
from pizza.eventing.transport.memory import MemoryTransport

AN_HOUR = 3600.0


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    return Service("sleepy")


@pytest.fixture
async def rounds(service: Service) -> AsyncIterator[asyncio.Queue[int]]:
    """Each round of the job "sleeper", which rests an hour; the host runs meanwhile.
    In its first round it wakes itself, as a commit during the work would."""
    done: asyncio.Queue[int] = asyncio.Queue()
    count = 0

    @service.runs("sleeper")
    async def sleeper() -> float:
        nonlocal count
        count += 1
        done.put_nowait(count)
        if count == 1:
            service.wake("sleeper")
            await asyncio.sleep(0)
        return AN_HOUR

    host = ServiceHost(service, MemoryTransport(), relay_interval=0.05)
    await host.start()
    try:
        yield done
    finally:
        await asyncio.wait_for(host.stop(timeout=10.0), 30)


async def test_a_wake_up_during_the_work_ends_the_rest_that_follows(
        rounds: asyncio.Queue[int]) -> None:
    await asyncio.wait_for(rounds.get(), 10)
    await asyncio.wait_for(rounds.get(), 10)  # not an hour later


async def test_a_resting_job_runs_as_soon_as_it_is_woken(
        service: Service, rounds: asyncio.Queue[int]) -> None:
    for _ in range(2):
        await asyncio.wait_for(rounds.get(), 10)
    await asyncio.sleep(0.2)
    assert rounds.empty()  # resting
    service.wake("someone-else")  # another job's work: this one rests on
    await asyncio.sleep(0.2)
    assert rounds.empty()
    service.wake("sleeper")
    await asyncio.wait_for(rounds.get(), 10)


def test_waking_a_service_that_is_not_running_does_nothing(service: Service) -> None:
    service.wake("sleeper")
