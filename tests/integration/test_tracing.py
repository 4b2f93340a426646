"""Trace context travels from producer to consumer, as W3C traceparent and as spans."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pizza.eventing import Context, Event, Service, ServiceHost, event
from pizza.eventing.envelope import Metadata
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport


@event("TraceStarted", version=1, source="tracer")
class TraceStartedV1(Event):
    n: int


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def test_trace_context_is_carried_from_producer_to_consumer(
        nats_server: EmbeddedNats, spans: InMemorySpanExporter, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    received: list[tuple[Metadata, dict[str, str]]] = []
    consumer = Service("traced")

    @consumer.handles(TraceStartedV1)
    async def on_started(_event: TraceStartedV1, ctx: Context) -> None:
        assert ctx.cause is not None
        received.append((ctx.cause, {}))

    transport = NatsTransport(nats_server.url)
    await transport.start()
    hosts = [ServiceHost(Service("tracer"), transport), ServiceHost(consumer, transport)]
    for host in hosts:
        await host.start()
    try:
        async with hosts[0].unit_of_work() as ctx:
            sent = ctx.publish(TraceStartedV1(n=1))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        for host in hosts:
            await host.stop()
        await transport.close()

    assert received and received[0][0].traceparent == sent.traceparent
    finished = spans.get_finished_spans()
    subject = TraceStartedV1.info.subject
    send = next(s for s in finished if s.name == f"send {subject}")
    process = next(s for s in finished if s.name == f"process {subject}")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert process.attributes["messaging.message.id"] == sent.id
    assert sent.traceparent == (
        f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}"
        f"-{int(send.context.trace_flags):02x}")
