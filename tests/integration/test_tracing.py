"""One order, one trace: from the HTTP request that places it, through every message it
causes, to the simulated staff and the emails' replies; as W3C traceparent and as spans."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from harness import System, app_for, eventually, running
from pizza import config
from pizza.app import load
from pizza.eventing import Context, Event, Service, ServiceHost, event, tracing
from pizza.eventing.envelope import Metadata
from pizza.eventing.transport.embedded import EmbeddedNats, free_port
from pizza.eventing.transport.memory import MemoryTransport
from pizza.eventing.transport.nats import NatsTransport


@event("TraceStarted", version=1, source="tracer")
class TraceStartedV1(Event):
    n: int


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK, installed once for the process (OpenTelemetry allows one provider); the
    spans of later tests are not kept."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return (f"00-{context.trace_id:032x}-{context.span_id:016x}"
            f"-{int(context.trace_flags):02x}")


async def test_trace_context_is_carried_from_producer_to_consumer(
        nats_server: EmbeddedNats, spans: InMemorySpanExporter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real JetStream: the header and the metadata carry the writer's span, the
    relay's publish is its child, and so is the handler's span."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    received: list[tuple[Metadata, str]] = []
    consumer = Service("traced")

    @consumer.handles(TraceStartedV1)
    async def on_started(_event: TraceStartedV1, ctx: Context) -> None:
        assert ctx.cause is not None
        received.append((ctx.cause, tracing.format_traceparent(
            trace.get_current_span().get_span_context())))

    transport = NatsTransport(nats_server.url)
    await transport.start()
    hosts = [ServiceHost(Service("tracer"), transport), ServiceHost(consumer, transport)]
    for host in hosts:
        await host.start()
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("writer") as writer:
            async with hosts[0].unit_of_work() as ctx:
                sent = ctx.publish(TraceStartedV1(n=1))
        await eventually(lambda: received, what="the event handled")
    finally:
        for host in hosts:
            await host.stop()
        await transport.close()

    subject = TraceStartedV1.info.subject
    assert sent.traceparent == traceparent_of(writer)  # type: ignore[arg-type]
    assert received[0][0].traceparent == sent.traceparent
    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.name == f"publish {subject}")
    process = next(s for s in finished if s.name == f"process {subject}"
                   and s.attributes and "messaging.message.id" in s.attributes)
    assert publish.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    for span in (publish, process):
        assert span.parent is not None and span.parent.span_id == writer.context.span_id
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.destination.name"] == subject
        assert span.attributes["messaging.message.id"] == sent.id
    assert received[0][1] == traceparent_of(process)  # the handler runs in its span


# -- one order's story, every service in-process, the staff simulated -------------------

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def simulated_staff() -> Iterator[None]:
    config.configure(simulate=True, cook_seconds=0, drive_seconds=0, smtp_sink=True,
                     smtp_host="127.0.0.1", smtp_port=free_port())
    yield
    config.reset()


def envelopes_of(system: System, order_id: str) -> list[tuple[str, dict[str, Any], str]]:
    """(subject, envelope, traceparent header) of every message about one order."""
    assert isinstance(system.transport, MemoryTransport)
    found = []
    for subject, data, headers in system.transport.messages("pizza."):
        envelope = orjson.loads(data)
        if envelope["metadata"]["correlationId"] == order_id:
            found.append((subject, envelope, headers.get("traceparent", "")))
    return found


def trace_id(traceparent: str) -> int:
    return int(traceparent.split("-")[1], 16)


def span_id(traceparent: str) -> int:
    return int(traceparent.split("-")[2], 16)


# What each order's story holds once it has ended.
STORIES = {
    "delivery": {"OrderConfirmed", "SendEmail", "EmailSent", "OrderPreparing", "OrderPrepared",
                 "OrderOutForDelivery", "OrderDelivered", "OrderCompleted",
                 "LoyaltyPointsAdded"},
    "pickup": {"OrderConfirmed", "SendEmail", "EmailSent", "OrderPreparing", "OrderPrepared",
               "OrderReadyForCollection", "OrderCollected", "OrderCompleted",
               "LoyaltyPointsAdded"},
    # Its deliveryId is never heard of: orders' background job cancels it at the deadline.
    "awaiting": {"OrderCancelled", "SendEmail", "EmailSent"},
}


async def test_an_orders_story_is_one_trace_from_the_http_request(
        tmp_path: Path, spans: InMemorySpanExporter, simulated_staff: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_DELIVERY_ID_DEADLINE", "0")
    services = load()
    async with running(services, tmp_path) as system:
        app = app_for(services, system.issuer, system.runtime)
        tracing.install_http(app)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test", headers=system.signed_in("operator"))
        try:
            address = await http.post("/api/delivery-addresses", json={
                "customerId": "ada", "line1": "1 Leaf Lane", "city": "London",
                "postcode": "N1 9GU"})
            assert address.status_code == 201, address.text
            await system.settle()
            order = {"customerId": "ada", "email": "ada@example.com",
                     "items": [{"menuItemId": "margherita", "quantity": 1}]}
            placed = [
                await http.post("/api/orders", headers={"traceparent": INCOMING},
                                json={**order, "fulfilment": "delivery",
                                      "deliveryId": address.json()["deliveryId"]}),
                await http.post("/api/orders", json={**order, "fulfilment": "pickup"}),
                await http.post("/api/orders", json={
                    **order, "fulfilment": "delivery",
                    "deliveryId": "0b5e6a52-3f8e-4a38-9d4c-5a0f64c9a1aa"}),
            ]
            assert [answer.status_code for answer in placed] == [202] * 3
            ids = {kind: answer.json()["orderId"]
                   for kind, answer in zip(STORIES, placed, strict=True)}

            def ended() -> bool:
                """Every order's story is whole: its emails answered, its points given."""
                return all(STORIES[kind] <= {e["metadata"]["type"] for _s, e, _h
                                             in envelopes_of(system, order_id)}
                           for kind, order_id in ids.items())

            await eventually(ended, timeout=30, what="every story ended")
            await system.settle()
        finally:
            await http.aclose()

    finished = spans.get_finished_spans()
    trace_ids = {}
    for kind, order_id in ids.items():
        story = envelopes_of(system, order_id)
        types = [e["metadata"]["type"] for _s, e, _h in story]
        assert set(types) == STORIES[kind], types
        assert types.count("EmailSent") == (1 if kind == "awaiting" else 2), types
        # Every message of the order, in metadata and header, is in one trace.
        for _subject, envelope, header in story:
            assert header == envelope["metadata"]["traceparent"], envelope["metadata"]
        (the_trace,) = {trace_id(header) for _s, _e, header in story}
        trace_ids[kind] = the_trace

        in_trace = [s for s in finished if s.context.trace_id == the_trace]
        by_id = {s.context.span_id: s for s in in_trace}
        # The HTTP request is the root; every other span hangs from it.
        (root,) = [s for s in in_trace if s.parent is None or s.parent.span_id not in by_id]
        assert root.kind == SpanKind.SERVER and root.name == "POST /api/orders"
        if kind == "delivery":  # the caller's traceparent is the parent
            assert root.parent is not None and root.parent.is_remote
            assert root.parent.span_id == span_id(INCOMING)
            assert the_trace == trace_id(INCOMING)
        else:
            assert root.parent is None
        if kind != "awaiting":
            # v1 and v2 of OrderConfirmed: one fact, written in the request's span.
            confirmed = {e["metadata"]["version"]: header for _s, e, header in story
                         if e["metadata"]["type"] == "OrderConfirmed"}
            assert confirmed == {1: traceparent_of(root), 2: traceparent_of(root)}

        for subject, envelope, header in story:
            meta = envelope["metadata"]
            writer = span_id(header)
            assert writer in by_id, f"{meta['type']}: no span wrote it"
            publish = [s for s in in_trace if s.attributes
                       and s.attributes.get("messaging.message.id") == meta["id"]
                       and s.kind == SpanKind.PRODUCER and s.name.startswith("publish ")]
            assert len(publish) == 1, f"{meta['type']}: {len(publish)} publish spans"
            assert publish[0].name == f"publish {subject}"
            assert publish[0].parent is not None and publish[0].parent.span_id == writer
            assert publish[0].attributes == {
                **publish[0].attributes, "messaging.system": "nats",
                "messaging.destination.name": subject, "messaging.message.id": meta["id"]}
            handlers = [s for s in in_trace if s.kind == SpanKind.CONSUMER
                        and s.attributes and s.attributes.get("messaging.message.id") == meta["id"]]
            for handler in handlers:
                assert handler.name == f"process {subject}"
                assert handler.parent is not None and handler.parent.span_id == writer
                assert handler.attributes is not None
                assert handler.attributes["messaging.system"] == "nats"
                assert handler.attributes["messaging.message.conversation_id"] == order_id
                # The batch it was handled in links to it; the batch is a trace of its own.
                batches = [s for s in finished if s.attributes
                           and "messaging.batch.message_count" in s.attributes
                           and s.attributes["messaging.consumer.group.name"]
                           == handler.attributes["messaging.consumer.group.name"]
                           and any(link.context.span_id == writer for link in s.links)]
                assert batches and all(b.kind == SpanKind.CONSUMER for b in batches)
                assert all(b.context.trace_id != the_trace for b in batches)
        handled = {s.attributes["messaging.message.id"] for s in in_trace
                   if s.kind == SpanKind.CONSUMER and s.attributes
                   and "messaging.message.id" in s.attributes}
        # Each message someone subscribes to was handled in this trace.
        consumed = {e["metadata"]["id"] for _s, e, _h in story
                    if e["metadata"]["type"] in ("OrderConfirmed", "OrderPrepared",
                                                 "OrderCancelled", "SendEmail", "EmailSent",
                                                 "OrderCompleted")}
        assert consumed - handled == set()
        if kind == "awaiting":
            # Cancelled by a background job, in the trace of the request that placed it.
            (cancelled,) = [h for _s, e, h in story if e["metadata"]["type"] == "OrderCancelled"]
            create = by_id[span_id(cancelled)]
            assert create.name == "create pizza.events.orders.OrderCancelled.v1"
            assert create.parent is not None and create.parent.span_id == root.context.span_id
            continue
        # The simulated staff continue the trace: the kitchen's steps descend from the
        # kitchen's handling of the order (the start, then the finish).
        (prepared,) = [h for _s, e, h in story if e["metadata"]["type"] == "OrderPrepared"]
        create = by_id[span_id(prepared)]
        assert create.kind == SpanKind.PRODUCER
        assert create.name == "create pizza.events.kitchen.OrderPrepared.v1"
        ancestors = []
        while create.parent is not None and create.parent.span_id in by_id:
            create = by_id[create.parent.span_id]
            ancestors.append(create.name)
        assert ancestors[:2] == ["create pizza.events.kitchen.OrderPreparing.v1",
                                 "process pizza.events.orders.OrderConfirmed.v1"], ancestors

    assert len(set(trace_ids.values())) == 3, "each order a trace of its own"


# -- the OTLP exporter -------------------------------------------------------------------

def test_pizza_up_with_otlp_but_without_the_extra_says_which_extra_in_one_line(
        tmp_path: Path) -> None:
    """A start where the exporter cannot be imported (by any process it starts): one
    line, exit 1, nothing left running."""
    hidden = tmp_path / "without-otlp"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n")
    path = os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))
    start = subprocess.Popen(
        [sys.executable, "-c", "from pizza.cli import app; app(['up', '--port', '0'])"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "PIZZA_HOME": str(tmp_path / "home"),
             "PIZZA_TRACING": "otlp"})
    try:
        _out, stderr = start.communicate(timeout=45)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGKILL)  # whatever it started goes too
    assert start.returncode == 1, stderr
    assert stderr.strip().count("\n") == 0, stderr
    assert "PIZZA_TRACING=otlp" in stderr and "'.[otlp]'" in stderr
    assert "Traceback" not in stderr


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TracerProvider]]:
    """What ``configure_from_environment`` would install, as if no SDK were yet."""
    providers: list[TracerProvider] = []
    monkeypatch.setattr(tracing, "_sdk_installed", lambda: False)
    monkeypatch.setattr(tracing.trace, "set_tracer_provider", providers.append)
    yield providers
    for provider in providers:
        provider.shutdown()


def exporter_of(provider: TracerProvider) -> object:
    (processor,) = provider._active_span_processor._span_processors
    return processor.span_exporter  # type: ignore[attr-defined]


def test_otlp_with_the_extra_sends_to_the_standard_endpoint(
        installed: list[TracerProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    otlp = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                               reason="the 'otlp' extra (opentelemetry-exporter-otlp-proto-http)")
    monkeypatch.setenv("PIZZA_TRACING", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.test:4318")
    tracing.configure_from_environment("pizza-kitchen")
    (provider,) = installed
    exporter = exporter_of(provider)
    assert isinstance(exporter, otlp.OTLPSpanExporter)
    assert exporter._endpoint == "http://collector.test:4318/v1/traces"
    assert provider.resource.attributes["service.name"] == "pizza-kitchen"


def test_console_stays_and_anything_else_is_refused_in_one_line(
        installed: list[TracerProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    monkeypatch.setenv("PIZZA_TRACING", "console")
    tracing.configure_from_environment()
    assert isinstance(exporter_of(installed[0]), ConsoleSpanExporter)
    monkeypatch.setenv("PIZZA_TRACING", "zipkin")
    with pytest.raises(SystemExit, match="console, otlp or none") as refused:
        tracing.configure_from_environment()
    assert "\n" not in str(refused.value)
