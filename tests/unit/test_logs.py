"""pizza's log lines: one per event, cut, fast whatever they quote, and as JSON with the
message being handled (service, correlationId, orderId, trace id) when asked."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import harness
from pizza import logs
from pizza.eventing import Backoff, Context, Event, Service, event
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.base import Outgoing
from pizza.log_limits import MAX_CHARACTERS

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@event("LogTestCooked", version=1, source="logtest")
class CookedV1(Event):
    order_id: str
    pizzas: int


def logtest_service() -> Service:
    service = Service("logtest")
    service.declare_publishes(CookedV1)
    log = logging.getLogger("pizza.services.logtest.handlers")

    @service.handles(CookedV1, max_attempts=2,
                     backoff=Backoff(initial=0.01, factor=1.0, maximum=0.01))
    async def note(cooked: CookedV1, _ctx: Context) -> None:
        if cooked.pizzas < 0:
            raise ValueError("a negative number of pizzas")
        log.info("cooked %d pizzas", cooked.pizzas)

    return service


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What pizza's JSON handler writes, attached to every ``pizza`` logger."""
    out = io.StringIO()
    handler = logs.console_handler(out, style="json")
    root = logging.getLogger("pizza")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, str]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def cooked(pizzas: int, order_id: str) -> Envelope:
    meta = Metadata(type="LogTestCooked", version=1, source="logtest",
                    correlation_id="story-7", traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    return Envelope(meta, {"orderId": order_id, "pizzas": pizzas})


async def test_a_handled_message_logs_one_json_line_with_its_story(
        tmp_path: Path, captured: io.StringIO) -> None:
    order_id = "6f1c1a64-3d1e-4c5e-9f4c-0d7f1d2a8b11"
    async with harness.running([logtest_service()], tmp_path) as system:
        envelope = cooked(2, order_id)
        await harness.deliver(system, envelope)
    [line] = [doc for doc in lines(captured) if doc["message"] == "cooked 2 pizzas"]
    assert line["level"] == "INFO"
    assert line["logger"] == "pizza.services.logtest.handlers"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert line["service"] == "logtest"
    assert line["queue"] == "note"
    assert line["correlationId"] == "story-7"
    assert line["orderId"] == order_id
    assert line["traceId"] == TRACE_ID
    assert line["messageId"] == envelope.metadata.id
    assert line["messageType"] == "LogTestCooked"


async def test_the_kernel_s_retry_line_names_the_message_too(
        tmp_path: Path, captured: io.StringIO) -> None:
    async with harness.running([logtest_service()], tmp_path) as system:
        envelope = cooked(-1, "1b0e4c4e-5a4f-4f5e-8f0e-3c2b1a0d9e8f")
        await system.transport.publish([Outgoing(
            envelope.metadata.id, CookedV1.info.subject, envelope.encode())])

        def given_up() -> list[dict[str, str]]:
            return [doc for doc in lines(captured) if "dead letter" in doc["message"]]

        await harness.eventually(given_up, what="the failing message dead-lettered")
    retry = next(doc for doc in lines(captured) if "retrying" in doc["message"])
    assert retry["logger"] == "pizza.eventing.consumer"
    assert retry["correlationId"] == "story-7"
    assert retry["orderId"] == "1b0e4c4e-5a4f-4f5e-8f0e-3c2b1a0d9e8f"
    # Outside a handler a line carries no message's fields.
    logging.getLogger("pizza.eventing.host").warning("between messages")
    assert "correlationId" not in lines(captured)[-1]


@pytest.mark.parametrize(("style", "terminal"),
                         [("json", False), ("text", False), ("text", True)])
def test_a_megabyte_field_logs_in_milliseconds_on_one_cut_line(style: str,
                                                               terminal: bool) -> None:
    out = io.StringIO()
    handler = logs.console_handler(out, style=style, terminal=terminal)
    log = logging.getLogger(f"pizza.test-logs-{style}-{terminal}")
    log.addHandler(handler)
    log.propagate = False
    huge = "x" * 1_000_000
    try:
        log.warning("warm up")
        started = time.perf_counter()
        log.warning("order [bold]%s[/bold] refused:\n%s", huge, huge)
        took = time.perf_counter() - started
    finally:
        log.removeHandler(handler)
    assert took < 0.05, f"{took * 1000:.1f} ms"
    written = out.getvalue().splitlines()[-1] if not terminal else out.getvalue()
    assert written.count("x") <= MAX_CHARACTERS
    assert "[2000029 characters]" in written  # how long the message was
    if not terminal:  # a file or a pipe: exactly one line per event
        assert len(out.getvalue().splitlines()) == 2
    if terminal:  # Rich renders the text as it is: no markup taken from a message
        assert "[bold]" in written


@pytest.mark.parametrize("style", ["json", "text"])
def test_an_exception_is_bounded_and_stays_on_its_line(style: str) -> None:
    out = io.StringIO()
    handler = logs.console_handler(out, style=style, terminal=False)
    log = logging.getLogger(f"pizza.test-logs-exception-{style}")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError("y" * 1_000_000)
        except ValueError:
            log.exception("it failed")
    finally:
        log.removeHandler(handler)
    [line] = out.getvalue().splitlines()
    assert len(line) < logs.MAX_TRACEBACK + 500
    assert "ValueError" in line
    if style == "json":
        document = orjson.loads(line)
        assert document["message"] == "it failed"
        assert document["exception"].startswith("Traceback")


def test_the_format_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_LOG_FORMAT", "json")
    assert logs.log_format() == "json"
    monkeypatch.setenv("PIZZA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="PIZZA_LOG_FORMAT"):
        logs.log_format()
    monkeypatch.delenv("PIZZA_LOG_FORMAT")
    assert logs.log_format() == "text"
