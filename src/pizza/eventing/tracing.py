"""One trace per story: W3C traceparent in every message, OpenTelemetry spans at each hop.

An order's trace starts with the HTTP request that places it (a SERVER span, see
``install_http``; an incoming ``traceparent`` header is its parent) and every message it
causes continues it:

* **Writing** (``Context`` -> ``for_message``): a message carries the context of the span
  it was written in, in its metadata and as the ``traceparent`` header, and the outbox row
  keeps it. OrderConfirmed v1 and v2, written in one request, carry the same one.
* **Publishing** (the outbox relay -> ``publishing``): ``publish <subject>``, PRODUCER, a
  child of the context stored with the row, ended when the broker answered.
* **Handling** (the consumer -> ``batch`` and ``processing``): the transaction of a fetched
  batch is ``process <subject>`` (CONSUMER) with a link to each message's context; each
  handler runs in its own ``process <subject>`` (CONSUMER), a child of its message, and
  what it sends continues that span.
* **Acting on a story later** (a click in the kitchen, the simulated staff, a reply sent
  after the email went out): a message about a story this service handled before is
  written under ``create <subject>`` (PRODUCER), a child of the span that handled the
  story's last message here, linked to the span that did the work (a click's request).
  Services keep that context in memory (``remember``, the last ``MAX_STORIES`` stories):
  after a restart, or in another process of the service, the step starts a trace of its
  own that names the story (``messaging.message.conversation_id``).

Attributes follow OpenTelemetry's messaging conventions (``messaging.system=nats``,
``messaging.destination.name``, ``messaging.message.id``, ...). Without an SDK no span is
made, yet messages still carry a valid traceparent: one trace id per story, a new span id
per hop, so cause and effect can be followed in logs (about 1 us a message).
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

if TYPE_CHECKING:
    from pizza.eventing.envelope import Metadata
    from pizza.eventing.transport.base import Outgoing

_tracer = trace.get_tracer("pizza.eventing")

NATS = "nats"
# (service, story) pairs whose latest context a process keeps, for work on them later.
MAX_STORIES = 50_000  # about 15 MB
# (service, correlationId) -> traceparent, least recently told first. An OrderedDict: a
# dict's oldest key is found by walking past every slot deleted before it, which made
# each message handled cost a scan once the stories were full.
_stories: OrderedDict[tuple[str, str], str] = OrderedDict()
# The extra that brings the OTLP exporter, named when it is missing.
OTLP_EXTRA = "pip install -e '.[otlp]'  (or: pip install 'pizza[otlp]')"


_sdk_seen = False  # a provider, once set, stays: remember it


def _sdk_installed() -> bool:
    global _sdk_seen
    if not _sdk_seen:
        _sdk_seen = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _sdk_seen


def recording() -> bool:
    """Whether spans are made at all (an OpenTelemetry SDK is installed)."""
    return _sdk_installed()


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    if not value:
        return None
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def _trace_id(traceparent: str) -> str:
    return traceparent[3:35]


def _child_of(parent: str | None) -> str:
    """A new span id in the parent's trace, or a new trace (the path without an SDK: no
    parsing beyond slicing, and non-cryptographic ids, as W3C allows)."""
    if parent and len(parent) == 55 and parent.startswith("00-"):
        trace_id, flags = parent[3:35], parent[53:55]
    else:
        trace_id, flags = f"{random.getrandbits(128):032x}", "01"
    return f"00-{trace_id}-{random.getrandbits(64) or 1:016x}-{flags}"


def _in_context(traceparent: str | None) -> Context:
    """An OpenTelemetry context whose current span is this remote one (else: a root)."""
    parent = parse_traceparent(traceparent)
    return trace.set_span_in_context(NonRecordingSpan(parent)) if parent else Context()


def _messaging(operation: str, subject: str, message_id: str | None = None,
               story: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": NATS,
        "messaging.operation.type": operation,
        "messaging.destination.name": subject,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    if story is not None:
        attributes["messaging.message.conversation_id"] = story
    return attributes


# -- stories ------------------------------------------------------------------------------

def remember(service: str, story: str | None, traceparent: str | None) -> None:
    """The context in which ``service`` last worked on ``story`` (a correlationId)."""
    if not story or not traceparent:
        return
    key = (service, story)
    _stories[key] = traceparent
    _stories.move_to_end(key)
    if len(_stories) > MAX_STORIES:
        _stories.popitem(last=False)


def remembered(service: str, story: str) -> str | None:
    return _stories.get((service, story))


def begin_story(service: str, story: str) -> None:
    """Work that names a story (placing an order): if this service knows nothing of it
    yet, later work on it continues the span we are in, even when nothing is sent now
    (an order that waits for its delivery address is confirmed later, by a message)."""
    if (service, story) not in _stories:
        remember(service, story, _current())


def _current() -> str | None:
    """The span we are in (with an SDK), or the remote context an HTTP request brought."""
    context = trace.get_current_span().get_span_context()
    return format_traceparent(context) if context.is_valid else None


# -- writing ------------------------------------------------------------------------------

def for_message(service: str, subject: str, message_id: str, *, story: str | None,
                acting_on: str | None, cause: str | None) -> str:
    """The traceparent of a message written now (into the outbox).

    ``story``: its correlationId. ``acting_on``: the story named explicitly by the writer
    (an order's id: placing it, a click about it, a background job). ``cause``: the
    traceparent of the message being handled, if any. Every message is remembered as
    its story's latest context here, so the messages of one new story written outside
    any span (OrderConfirmed v1 and v2 and the receipt, with no SDK) share a trace.
    """
    current = _current()
    known = remembered(service, acting_on) if acting_on else None
    if known and (current is None or _trace_id(current) != _trace_id(known)):
        # Work on a story outside its trace (a click, the simulated staff): continue it.
        traceparent = _create(subject, message_id, story, parent=known, link=current,
                              service=service)
    elif current is not None:
        traceparent = current if _sdk_installed() else _child_of(current)
    else:  # outside any span: after the message handled, else a new trace
        traceparent = _create(subject, message_id, story, parent=cause, link=None,
                              service=service)
    remember(service, story, traceparent)
    return traceparent


def _create(subject: str, message_id: str, story: str | None, *, parent: str | None,
            link: str | None, service: str) -> str:
    """A ``create`` span for one message (an instant), or without an SDK a new span id."""
    if not _sdk_installed():
        return _child_of(parent)
    linked = parse_traceparent(link)
    attributes = _messaging("create", subject, message_id, story)
    attributes["pizza.service"] = service
    span = _tracer.start_span(f"create {subject}", context=_in_context(parent),
                              kind=SpanKind.PRODUCER, attributes=attributes,
                              links=[Link(linked)] if linked else None)
    span.end()
    return format_traceparent(span.get_span_context())


# -- publishing ---------------------------------------------------------------------------

def publishing(messages: Sequence[Outgoing]) -> list[Span]:
    """A ``publish`` span per message about to be sent (none without an SDK); end them
    with ``published``."""
    if not _sdk_installed():
        return []
    spans = []
    for message in messages:
        attributes = _messaging("send", message.subject, message.message_id)
        attributes["messaging.operation.name"] = "publish"
        attributes["messaging.message.body.size"] = len(message.payload)
        spans.append(_tracer.start_span(
            f"publish {message.subject}", context=_in_context(message.traceparent),
            kind=SpanKind.PRODUCER, attributes=attributes))
    return spans


def published(spans: list[Span], outcomes: Sequence[str | None] | None,
              error: BaseException | None = None) -> None:
    """End the publish spans: each message stored, refused (the reason), or in doubt."""
    for index, span in enumerate(spans):
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        elif outcomes is None or index >= len(outcomes):
            span.set_status(Status(StatusCode.ERROR, "not acknowledged; sent again later"))
        elif outcomes[index] is not None:
            span.set_status(Status(StatusCode.ERROR, str(outcomes[index])[:200]))
        span.end()


# -- handling -----------------------------------------------------------------------------

@contextmanager
def batch(subject: str, consumer: str, messages: Sequence[Metadata]) -> Iterator[None]:
    """The span of one transaction over a fetched batch, linked to each message."""
    links = [Link(context) for context in map(parse_traceparent,
                                               (m.traceparent for m in messages)) if context]
    attributes = _messaging("process", subject)
    attributes["messaging.consumer.group.name"] = consumer
    attributes["messaging.batch.message_count"] = len(messages)
    with _tracer.start_as_current_span(f"process {subject}", context=Context(),
                                       kind=SpanKind.CONSUMER, links=links,
                                       attributes=attributes):
        yield


@contextmanager
def processing(service: str, subject: str, meta: Metadata, consumer: str) -> Iterator[None]:
    """The span of one handler (with an SDK only): a child of its message (of the batch's
    span if the message has no trace); what the handler sends continues it."""
    attributes = _messaging("process", subject, meta.id, meta.correlation_id)
    attributes["messaging.consumer.group.name"] = consumer
    with _tracer.start_as_current_span(
        f"process {subject}",
        context=_in_context(meta.traceparent) if meta.traceparent else None,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        remember(service, meta.correlation_id, format_traceparent(span.get_span_context()))
        yield


def handled(service: str, meta: Metadata) -> None:
    """Without an SDK: remember the story's context as the message brought it."""
    remember(service, meta.correlation_id, meta.traceparent)


# -- HTTP ---------------------------------------------------------------------------------

def install_http(app: Any) -> None:
    """A SERVER span around each HTTP request (``POST /api/orders``), whose parent is the
    request's ``traceparent`` header if it has one; messages written while handling it
    continue it. Health checks and metrics scrapes make no spans."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/api/health,/metrics",
                                       exclude_spans=["receive", "send"])


# -- set-up -------------------------------------------------------------------------------

def configure_from_environment(service_name: str = "pizza") -> None:
    """Install the OpenTelemetry SDK when PIZZA_TRACING asks for it: ``console`` prints
    spans, ``otlp`` sends them to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP; the
    ``otlp`` extra). Anything else, or the extra missing, stops the start with one line."""
    exporter_name = os.environ.get("PIZZA_TRACING", "").strip().lower()
    if exporter_name in ("", "none") or _sdk_installed():
        return
    if exporter_name not in ("console", "otlp"):
        raise SystemExit(f"PIZZA_TRACING must be console, otlp or none, not "
                         f"{exporter_name[:40]!r}")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            raise SystemExit("PIZZA_TRACING=otlp needs the OTLP exporter, which is the "
                             f"extra 'otlp': {OTLP_EXTRA}") from None
        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT and friends
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
