"""Loyalty: one point per whole pound of a completed order, once, in our ledger or the SaaS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from harness import System, running
from pizza import config
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Backoff, Service
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.storage import inbox
from pizza.eventing.transport.base import Outgoing
from pizza.services.loyalty import create
from pizza.services.loyalty.resilience import CircuitBreaker, TokenBucket
from pizza.thirdparty import loyalty_saas

ADDED = "pizza.events.loyalty."


ORDER_1 = "00000000-0000-4000-8000-000000000001"
ORDER_2 = "00000000-0000-4000-8000-000000000002"


def order_n(n: int) -> str:
    """The id of a test's n-th order: a UUID, as orders makes them."""
    return f"00000000-0000-4000-8000-{n:012d}"


def completed(order_id: str = ORDER_1, value: float = 23.99,
              customer_id: str = "c-1") -> Envelope:
    event = OrderCompletedV1(order_id=order_id, customer_id=customer_id, order_value=value,
                             fulfilment="pickup")
    info = event.info
    return Envelope(Metadata(type=info.type, version=info.version, source=info.owner),
                    event.to_data())


async def deliver(system: System, *envelopes: Envelope, nats_suffix: str = "",
                  settle: bool = True) -> None:
    """Put envelopes on the bus in one go; a ``nats_suffix`` gets a copy past the broker's
    de-duplication, as a redelivery does."""
    await system.transport.publish([
        Outgoing(env.metadata.id + nats_suffix, OrderCompletedV1.info.subject, env.encode())
        for env in envelopes])
    if settle:
        await system.settle()


def added(system: System) -> list[dict[str, Any]]:
    return [e["data"] for e in system.published(ADDED)]


async def points(system: System, customer_id: str = "c-1") -> int:
    response = await system.http.get(f"/api/loyalty/{customer_id}")
    assert response.status_code == 200, response.text
    assert response.json()["customerId"] == customer_id
    return int(response.json()["points"])


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("it did not happen in time")
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def fresh_settings() -> Any:
    config.reset()
    yield
    config.reset()


# What a test changes in the add-points queue of the loyalty services it makes.
RETRIES: dict[str, Any] = {}


def loyalty(settings: config.Settings) -> Service:
    """Loyalty as ``create`` makes it, with the queue options a test asked for."""
    service = create(settings)
    for option, value in RETRIES.items():
        setattr(service.subscriptions["add-points"], option, value)
    return service


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries every 50 ms, so a test sees several attempts in well under a second."""
    monkeypatch.setitem(RETRIES, "backoff", Backoff(initial=0.05, factor=1.0))
    monkeypatch.setitem(RETRIES, "max_attempts", 100)


# -- our own ledger -----------------------------------------------------------------------


async def test_a_completed_order_earns_a_point_per_whole_pound(tmp_path: Path) -> None:
    async with running([loyalty], tmp_path) as system:
        await deliver(system, completed(ORDER_1, 23.99))
        await deliver(system, completed(ORDER_2, 10.0))

        assert added(system) == [
            {"customerId": "c-1", "orderId": ORDER_1, "points": 23, "balance": 23},
            {"customerId": "c-1", "orderId": ORDER_2, "points": 10, "balance": 33},
        ]
        assert await points(system) == 33
        [first, _] = system.published(ADDED)
        assert first["metadata"]["causationId"] is not None


async def test_an_unknown_customer_has_no_points(tmp_path: Path) -> None:
    async with running([loyalty], tmp_path) as system:
        await deliver(system, completed(ORDER_1, 12.0, customer_id="c-1"))
        assert await points(system, "someone-else") == 0


async def test_an_absurdly_long_customer_id_is_refused_at_once(tmp_path: Path) -> None:
    async with running([loyalty], tmp_path) as system:
        response = await system.http.get(f"/api/loyalty/{'c' * 60_000}")
        assert response.status_code == 422
        assert set(response.json()["error"]) == {"code", "message", "details"}
        assert len(response.content) < 2_000  # the id is not echoed back


async def test_pence_are_counted_before_pounds_are_floored(tmp_path: Path) -> None:
    async with running([loyalty], tmp_path) as system:
        await deliver(system, completed(ORDER_1, 0.1 + 0.2 + 29.7))  # 29.999999999999996
        await deliver(system, completed(ORDER_2, 0.99))  # under a pound: nothing

        assert [(e["orderId"], e["points"]) for e in added(system)] == [(ORDER_1, 30)]
        assert await points(system) == 30


async def test_an_order_earns_points_once_however_often_it_arrives(tmp_path: Path) -> None:
    async with running([loyalty], tmp_path) as system:
        env = completed(ORDER_1, 20.0)
        await deliver(system, env)
        await deliver(system, env, nats_suffix="-redelivered")  # caught by the inbox
        await deliver(system, completed(ORDER_1, 20.0))  # same order, new message id
        host = system.runtime.hosts["loyalty"]
        async with host.db.begin() as conn:  # forget everything the inbox knew
            await conn.execute(delete(inbox))
        await deliver(system, env, nats_suffix="-after-inbox-pruned")

        assert [e["orderId"] for e in added(system)] == [ORDER_1]
        assert await points(system) == 20


# -- the third-party SaaS behind the anti-corruption layer --------------------------------


@contextlib.asynccontextmanager
async def with_saas(tmp_path: Path, **saas_options: Any) -> AsyncIterator[
        tuple[System, Any]]:
    """The simulated SaaS on a free local port, and loyalty using it."""
    app = loyalty_saas.create_app(**saas_options)
    server, task = await loyalty_saas.serve("127.0.0.1", 0, app)
    try:
        config.configure(loyalty_backend="saas", loyalty_saas_url=loyalty_saas.url(server))
        async with running([loyalty], tmp_path) as system:
            yield system, app.state.saas
    finally:
        await loyalty_saas.stop(server, task)


async def test_with_the_saas_points_and_balances_come_from_them(tmp_path: Path) -> None:
    async with with_saas(tmp_path) as (system, saas):
        await deliver(system, completed(ORDER_1, 23.99))
        await deliver(system, completed(ORDER_2, 10.5))

        assert saas.balances == {"c-1": 33}
        assert saas.credits[ORDER_1].reference == ORDER_1  # the order id is the key
        assert [(e["points"], e["balance"]) for e in added(system)] == [(23, 23), (10, 33)]
        assert await points(system) == 33
        assert await points(system, "unknown-to-them") == 0


async def test_no_database_lock_is_held_while_the_saas_is_called(tmp_path: Path) -> None:
    """A slow SaaS holds up the credit, never our database: another write of loyalty's
    commits while the call is still waiting for their answer."""
    async with with_saas(tmp_path) as (system, saas):
        saas.latency = 1.0
        await deliver(system, completed(ORDER_1, 10.0), settle=False)
        await eventually(lambda: saas.stats["requests"] == 1)

        async with asyncio.timeout(5), system.runtime.hosts["loyalty"].db.begin() as conn:
            await conn.execute(delete(inbox).where(inbox.c.consumer == "nobody"))
        assert saas.stats["creditsApplied"] == 0  # their answer has not come yet

        await system.settle()
        assert added(system) == [
            {"customerId": "c-1", "orderId": ORDER_1, "points": 10, "balance": 10}]


async def test_a_redelivered_completion_does_not_call_them_again(tmp_path: Path) -> None:
    async with with_saas(tmp_path) as (system, saas):
        env = completed(ORDER_1, 10.0)
        await deliver(system, env)
        await deliver(system, env, nats_suffix="-redelivered")

        assert saas.stats["requests"] == 1
        assert saas.stats["creditsApplied"] == 1
        assert [e["orderId"] for e in added(system)] == [ORDER_1]


async def test_their_429_is_honoured_and_every_order_credited_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_LOYALTY_SAAS_RPS", "1000")  # our own limit out of the way
    async with with_saas(tmp_path, rate_limit_per_second=3) as (system, saas):
        orders = [completed(order_n(n), 10.0) for n in range(5)]
        started = asyncio.get_running_loop().time()
        await deliver(system, *orders)
        took = asyncio.get_running_loop().time() - started

        assert saas.stats["rateLimited"] == 1  # we waited as told instead of hammering
        assert took >= 0.9  # Retry-After: 1
        assert saas.stats["creditsApplied"] == 5
        assert sorted(e["balance"] for e in added(system)) == [10, 20, 30, 40, 50]
        assert await points(system) == 50


async def test_our_own_rate_limit_keeps_us_under_theirs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_LOYALTY_SAAS_RPS", "2.5")  # calls 0.4 s apart
    async with with_saas(tmp_path, rate_limit_per_second=3) as (system, saas):
        await deliver(system, *[completed(order_n(n), 1.0) for n in range(4)])

        assert saas.stats["rateLimited"] == 0  # four at once would have met a 429
        assert saas.balances == {"c-1": 4}


async def test_a_retry_after_a_lost_answer_does_not_credit_twice(
        tmp_path: Path, quick_retries: None) -> None:
    async with with_saas(tmp_path) as (system, saas):
        saas.lose_responses = 1  # they credit, but we hear a 504
        await deliver(system, completed(ORDER_1, 10.0))

        assert system.runtime.hosts["loyalty"].consumers[0].stats.retried == 1
        assert (saas.stats["creditsApplied"], saas.stats["creditsReplayed"]) == (1, 1)
        assert added(system) == [
            {"customerId": "c-1", "orderId": ORDER_1, "points": 10, "balance": 10}]
        assert await points(system) == 10


async def test_the_breaker_opens_in_an_outage_and_closes_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None) -> None:
    monkeypatch.setenv("PIZZA_LOYALTY_SAAS_FAILURES", "2")
    monkeypatch.setenv("PIZZA_LOYALTY_SAAS_COOL_DOWN", "0.4")
    async with with_saas(tmp_path) as (system, saas):
        breaker = system.service("loyalty").saas.current().breaker
        stats = system.runtime.hosts["loyalty"].consumers[0].stats
        saas.down = True
        await deliver(system, completed(ORDER_1, 10.0), settle=False)
        await eventually(lambda: breaker.state == "open")
        calls, retried = saas.stats["requests"], stats.retried
        await asyncio.sleep(0.15)

        assert calls == 2
        assert stats.retried > retried  # still retrying, but failing fast:
        assert saas.stats["requests"] == calls  # they were not called
        unavailable = await system.http.get("/api/loyalty/c-1")
        assert unavailable.status_code == 503
        assert unavailable.json()["error"]["code"] == "loyalty-unavailable"
        assert added(system) == []

        saas.down = False
        await system.settle()

        assert breaker.state == "closed"
        assert added(system) == [
            {"customerId": "c-1", "orderId": ORDER_1, "points": 10, "balance": 10}]
        assert await points(system) == 10
        assert system.published("pizza.deadletters.") == []


# -- the guards on their own, on a clock we move by hand ------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_fails_fast_and_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cool_down=10.0, clock=clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # only failures in a row count
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()

    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now += 10.0
    assert breaker.state == "half-open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one at a time
    breaker.failed()  # a failed trial opens it again at once
    assert breaker.state == "open"
    assert breaker.retry_in() == 10.0
    clock.now += 10.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


async def test_the_bucket_spaces_calls_and_honours_a_pause() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=4.0, clock=clock)

    assert await bucket.acquire(max_wait=0) is None  # the first goes at once
    assert await bucket.acquire(max_wait=0) == 0.25  # the next must wait: not taken
    clock.now += 0.25
    assert await bucket.acquire(max_wait=0) is None
    bucket.pause(3.0)  # they said Retry-After: 3
    clock.now += 1.0
    assert await bucket.acquire(max_wait=0) == 2.0
    clock.now += 2.0
    assert await bucket.acquire(max_wait=0) is None
