"""W3C trace context in every message, and OpenTelemetry spans around send and process.

Spans follow the messaging semantic conventions: ``send <subject>`` (PRODUCER) when a
message is created, ``process <subject>`` (CONSUMER) when it is handled, the latter a
child of the producer's context and linked to it. When no OpenTelemetry SDK is installed
the kernel still carries a valid ``traceparent`` (same trace id, a new span id per hop),
so cause and effect can be followed in logs without a collector, and costs ~1 us.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

_tracer = trace.get_tracer("pizza.eventing")
_current: ContextVar[str | None] = ContextVar("pizza_traceparent", default=None)


def _sdk_installed() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def recording() -> bool:
    """Whether spans are made at all (an OpenTelemetry SDK is installed)."""
    return _sdk_installed()


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    if not value:
        return None
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def _child_of(parent: str | None) -> str:
    """A new span id in the parent's trace, or a new trace (the per-message fast path:
    no parsing beyond slicing, and non-cryptographic ids, as W3C allows)."""
    if parent and len(parent) == 55 and parent.startswith("00-"):
        trace_id, flags = parent[3:35], parent[53:55]
    else:
        trace_id, flags = f"{random.getrandbits(128):032x}", "01"
    return f"00-{trace_id}-{random.getrandbits(64) or 1:016x}-{flags}"


def _ambient() -> str | None:
    """The trace we are in: the message being handled, else OpenTelemetry's current span."""
    current = _current.get()
    if current is not None:
        return current
    context = trace.get_current_span().get_span_context()
    return format_traceparent(context) if context.is_valid else None


def sending(subject: str, message_id: str, parent: str | None = None) -> str:
    """Record the creation of a message; return the traceparent it carries.

    ``parent`` is the traceparent of the message being handled, if any.
    """
    if not _sdk_installed():
        return _child_of(parent or _ambient())
    context = parse_traceparent(_current.get() or parent)
    parent_context = trace.set_span_in_context(NonRecordingSpan(context)) if context else None
    with _tracer.start_as_current_span(
        f"send {subject}",
        context=parent_context,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": message_id,
        },
    ) as span:
        return format_traceparent(span.get_span_context())


@contextmanager
def processing(subject: str, traceparent: str | None, message_id: str,
               consumer: str) -> Iterator[None]:
    """The span around one handled message; messages sent inside it continue its trace.

    Without an SDK there is no span to make: the handler's Context passes the message's
    traceparent to ``sending`` itself, so nothing is done per message here.
    """
    if not _sdk_installed():
        yield
        return
    producer = parse_traceparent(traceparent)
    parent = trace.set_span_in_context(NonRecordingSpan(producer)) if producer else None
    with _tracer.start_as_current_span(
        f"process {subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(producer)] if producer else None,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.message.id": message_id,
            "messaging.consumer.group.name": consumer,
        },
    ) as span:
        token = _current.set(format_traceparent(span.get_span_context()))
        try:
            yield
        finally:
            _current.reset(token)


def configure_from_environment(service_name: str = "pizza") -> None:
    """Install the OpenTelemetry SDK when PIZZA_TRACING asks for it (console or otlp)."""
    exporter_name = os.environ.get("PIZZA_TRACING", "").lower()
    if not exporter_name or exporter_name == "none" or _sdk_installed():
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
