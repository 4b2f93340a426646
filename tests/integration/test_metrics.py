"""GET /metrics of a running system on its own JetStream server: each metric moves when
its cause happens, a dependency that is away gives no sample (and no slow scrape), and
HTTP requests are labelled with their route template, never the raw path."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

import harness
from pizza.app import create_app
from pizza.eventing import Backoff, Context, Event, Service, event
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.services.loyalty.resilience import CircuitBreaker

eventually = functools.partial(harness.eventually, timeout=15.0)


@event("MeterTicked", version=1, source="meter")
class MeterTickedV1(Event):
    number: int


def meter_service(breaker: CircuitBreaker) -> Service:
    """Publishes a tick per POST and handles it: a negative tick always fails."""
    service = Service("meter")
    service.declare_publishes(MeterTickedV1)
    service.router = APIRouter()
    service.breakers["supplier"] = lambda: breaker.state

    @service.handles(MeterTickedV1, max_attempts=2,
                     backoff=Backoff(initial=0.05, factor=1.0, maximum=0.05))
    async def count(tick: MeterTickedV1, _ctx: Context) -> None:
        if tick.number < 0:
            raise ValueError(f"tick {tick.number} is not countable")

    @service.router.post("/api/meter/ticks/{number}", status_code=202)
    async def tick(number: int) -> dict[str, int]:
        async with service.unit_of_work() as ctx:
            ctx.publish(MeterTickedV1(number=number))
        return {"number": number}

    return service


def operator_headers(home: Path) -> dict[str, str]:
    """An operator's bearer token where the system checks one (CONTRACT section 5)."""
    try:
        from pizza.web.identity import issue_token
    except ImportError:  # no people authentication in this tree
        return {}
    return {"Authorization": f"Bearer {issue_token('operator', home=home)}"}


@dataclass
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    seconds: float
    content_type: str

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def names(self) -> set[str]:
        return {name for name, _labels in self.samples}

    def labelled(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]


@dataclass
class Running:
    app: FastAPI
    http: httpx.AsyncClient
    broker: EmbeddedNats
    breaker: CircuitBreaker

    async def scrape(self) -> Scrape:
        started = time.monotonic()
        answer = await self.http.get("/metrics")
        seconds = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for family in text_string_to_metric_families(answer.text)
                   for s in family.samples}
        return Scrape(samples, seconds, answer.headers["content-type"])


@pytest.fixture
async def meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                nats_server: EmbeddedNats) -> AsyncIterator[Running]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    breaker = CircuitBreaker(failure_threshold=1, cool_down=60.0)
    app = create_app([meter_service(breaker)],
                     runtime_options={"nats_url": nats_server.url, "relay_interval": 0.05})
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://test", headers=operator_headers(tmp_path))
        try:
            yield Running(app, client, nats_server, breaker)
        finally:
            await client.aclose()


QUEUE = {"service": "meter", "queue": "count"}


async def test_handled_messages_count_and_time_their_handlers(meter: Running) -> None:
    before = await meter.scrape()
    assert before.content_type.startswith("text/plain")
    assert before.value("pizza_queue_handled_total", **QUEUE) == 0
    assert before.value("pizza_handler_duration_seconds_count", **QUEUE) == 0
    assert before.value("pizza_queue_pending_messages", **QUEUE) == 0
    assert before.value("pizza_queue_in_flight_messages", **QUEUE) == 0

    for number in range(3):
        answer = await meter.http.post(f"/api/meter/ticks/{number}")
        assert answer.status_code == 202, answer.text

    async def handled_three() -> Scrape | None:
        now = await meter.scrape()
        return now if now.value("pizza_queue_handled_total", **QUEUE) == 3 else None

    after = await eventually(handled_three, what="three ticks handled")
    assert after.value("pizza_handler_duration_seconds_count", **QUEUE) == 3
    assert (after.value("pizza_handler_duration_seconds_bucket", **QUEUE, le="+Inf")) == 3
    assert after.value("pizza_outbox_published_total", service="meter") == 3
    assert after.value("pizza_outbox_backlog_messages", service="meter") == 0
    assert after.value("pizza_outbox_oldest_age_seconds", service="meter") == 0
    assert after.value("pizza_queue_dead_lettered_total", **QUEUE, reason="handler-failed") == 0
    assert after.value("pizza_event_loop_lag_seconds") is not None


async def test_a_failing_handler_is_retried_then_dead_lettered(meter: Running) -> None:
    assert (await meter.http.post("/api/meter/ticks/-1")).status_code == 202

    async def dead_lettered() -> Scrape | None:
        now = await meter.scrape()
        stored = now.value("pizza_dead_letters_messages", **QUEUE)
        return now if stored == 1 else None

    after = await eventually(dead_lettered, what="the failing tick stored as a dead letter")
    assert after.value("pizza_queue_retried_total", **QUEUE) == 1  # attempt 1 of 2
    assert after.value("pizza_queue_dead_lettered_total", **QUEUE, reason="handler-failed") == 1
    assert after.value("pizza_queue_handled_total", **QUEUE) == 0
    assert after.value("pizza_dead_letters_messages", service="meter", queue="outbox") == 0
    assert after.value("pizza_queue_in_flight_messages", **QUEUE) == 0


async def test_the_redelivered_gauge_shows_a_message_waiting_for_its_next_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    service = Service("slowretry")
    service.declare_publishes(MeterTickedV1)
    calls: list[int] = []

    @service.handles(MeterTickedV1, max_attempts=5,
                     backoff=Backoff(initial=0.05, factor=1.0, maximum=0.05))
    async def fail_twice(tick: MeterTickedV1, _ctx: Context) -> None:
        calls.append(tick.number)
        if len(calls) <= 2:
            raise ValueError("not yet")
        await asyncio.sleep(1.0)  # in hand, redelivered, while the test scrapes

    from pizza.eventing.envelope import Envelope, Metadata
    from pizza.eventing.transport.base import Outgoing

    app = create_app([service], runtime_options={"nats_url": nats_server.url,
                                                 "relay_interval": 0.05})
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://test", headers=operator_headers(tmp_path))
        running = Running(app, client, nats_server, CircuitBreaker())
        envelope = Envelope(Metadata(type="MeterTicked", version=1, source="meter"),
                            {"number": 7})
        host = app.state.runtime.hosts["slowretry"]
        await host.transport.publish([Outgoing(envelope.metadata.id,
                                               MeterTickedV1.info.subject, envelope.encode())])
        labels = {"service": "slowretry", "queue": "fail-twice"}

        async def redelivered() -> Scrape | None:
            now = await running.scrape()
            return now if now.value("pizza_queue_redelivered_messages", **labels) else None

        during = await eventually(redelivered, what="the third delivery in hand")
        assert during.value("pizza_queue_redelivered_messages", **labels) == 1
        assert during.value("pizza_queue_in_flight_messages", **labels) == 1
        assert during.value("pizza_queue_retried_total", **labels) == 2
        await client.aclose()


async def test_outbox_backlog_and_age_grow_while_the_broker_is_away(meter: Running) -> None:
    await meter.broker.stop()
    try:
        assert (await meter.http.post("/api/meter/ticks/1")).status_code == 202
        await asyncio.sleep(0.5)
        held = await meter.scrape()
        assert held.value("pizza_outbox_backlog_messages", service="meter") == 1
        age = held.value("pizza_outbox_oldest_age_seconds", service="meter")
        assert age is not None and age >= 0.4, age
        # The broker is away: its numbers are missing, not zero, and the scrape is quick.
        assert held.value("pizza_queue_pending_messages", **QUEUE) is None
        assert held.value("pizza_dead_letters_messages", **QUEUE) is None
        assert held.seconds < 1.0, held.seconds
    finally:
        await meter.broker.start()

    async def drained() -> Scrape | None:
        now = await meter.scrape()
        return now if now.value("pizza_outbox_backlog_messages", service="meter") == 0 \
            and now.value("pizza_queue_handled_total", **QUEUE) == 1 else None

    after = await eventually(drained, what="the outbox drained once the broker was back")
    assert after.value("pizza_outbox_oldest_age_seconds", service="meter") == 0


async def test_http_requests_are_counted_by_route_template(meter: Running) -> None:
    for number in (11, 12, 13):
        assert (await meter.http.post(f"/api/meter/ticks/{number}")).status_code == 202
    assert (await meter.http.get("/no/such/page/123")).status_code in (401, 403, 404)
    scrape = await meter.scrape()
    route = "/api/meter/ticks/{number}"
    assert scrape.value("pizza_http_requests_total", route=route, method="POST",
                        status="202") == 3
    assert scrape.value("pizza_http_request_duration_seconds_count", route=route,
                        method="POST") == 3
    routes = {labels["route"] for labels in scrape.labelled("pizza_http_requests_total")}
    assert not any(any(c.isdigit() for c in r.replace("{number}", "")) for r in routes), routes
    assert "unmatched" in routes


async def test_the_breaker_state_follows_the_breaker(meter: Running) -> None:
    labels = {"service": "meter", "breaker": "supplier"}
    closed = await meter.scrape()
    assert closed.value("pizza_circuit_breaker_state", **labels, state="closed") == 1
    assert closed.value("pizza_circuit_breaker_state", **labels, state="open") == 0
    meter.breaker.failed()  # its threshold is one failure
    opened = await meter.scrape()
    assert opened.value("pizza_circuit_breaker_state", **labels, state="open") == 1
    assert opened.value("pizza_circuit_breaker_state", **labels, state="closed") == 0


def test_the_loyalty_service_reports_its_saas_breaker_only_when_it_uses_the_saas() -> None:
    from pizza.config import Settings
    from pizza.services import loyalty

    ledger = loyalty.create(Settings(loyalty_backend="ledger"))
    assert ledger.breakers["loyalty_saas"]() is None


async def test_two_systems_in_one_interpreter_keep_their_own_registries(
        meter: Running) -> None:
    from prometheus_client import REGISTRY

    # The same metric names again: a shared registry would refuse them as duplicates.
    create_app([meter_service(CircuitBreaker())], runtime_options={"nats_url": "nats://x"})
    assert not [m for m in REGISTRY.collect() if m.name.startswith("pizza_")]
    assert (await meter.scrape()).value("pizza_queue_handled_total", **QUEUE) == 0
