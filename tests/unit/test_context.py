"""What a handler's Context puts in the metadata of the messages it sends."""

from __future__ import annotations

from typing import Any

import pytest

from pizza.eventing import Context, Event, event, tracing
from pizza.eventing.envelope import Envelope, Metadata


@event("ParcelPacked", version=1, source="depot")
class ParcelPackedV1(Event):
    parcel_id: str


def cause() -> Metadata:
    return Metadata(type="ParcelOrdered", version=1, source="shop",
                    correlation_id="story-1",
                    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def test_a_message_caused_by_another_continues_its_story_and_its_trace() -> None:
    ordered = cause()
    ctx = Context("depot", db=Any, cause=ordered)  # type: ignore[arg-type]
    sent = ctx.publish(ParcelPackedV1(parcel_id="p-1"))

    assert sent.correlation_id == "story-1"
    assert sent.causation_id == ordered.id
    assert sent.traceparent is not None and ordered.traceparent is not None
    assert sent.traceparent.split("-")[1] == ordered.traceparent.split("-")[1], "same trace"
    assert sent.traceparent.split("-")[2] != ordered.traceparent.split("-")[2], "new span"
    [outgoing] = ctx.outgoing
    on_the_wire = Envelope.decode(outgoing.payload)
    assert on_the_wire.metadata == sent
    assert outgoing.headers() == {"Nats-Msg-Id": sent.id, "traceparent": sent.traceparent}


def test_a_new_story_starts_with_its_own_correlation_and_trace() -> None:
    ctx = Context("depot", db=Any)  # type: ignore[arg-type]
    first = ctx.publish(ParcelPackedV1(parcel_id="p-1"))
    assert first.correlation_id == first.id and first.causation_id is None
    assert first.traceparent is not None and len(first.traceparent) == 55


def test_a_service_cannot_publish_another_services_event() -> None:
    ctx = Context("shop", db=Any)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depot owns it"):
        ctx.publish(ParcelPackedV1(parcel_id="p-1"))


def trace_of(traceparent: str | None) -> str:
    assert traceparent is not None and len(traceparent) == 55
    return traceparent.split("-")[1]


def test_messages_of_one_new_story_share_its_trace() -> None:
    """OrderConfirmed v1 and v2 and the receipt, written in one request: one trace."""
    ctx = Context("depot", db=Any, correlation_id="story-new")  # type: ignore[arg-type]
    first = ctx.publish(ParcelPackedV1(parcel_id="p-1"))
    second = ctx.publish(ParcelPackedV1(parcel_id="p-1"))
    other = Context("depot", db=Any).publish(  # type: ignore[arg-type]
        ParcelPackedV1(parcel_id="p-2"))
    assert trace_of(first.traceparent) == trace_of(second.traceparent)
    assert trace_of(other.traceparent) != trace_of(first.traceparent)


def test_work_on_a_story_later_continues_the_trace_it_was_handled_in() -> None:
    """A click, or the simulated staff, about an order this service handled before."""
    handled = cause()
    handled.correlation_id = "story-later"
    tracing.handled("depot", handled)
    ctx = Context("depot", db=Any)  # type: ignore[arg-type]
    later = ctx.publish(ParcelPackedV1(parcel_id="p-1"), correlation_id="story-later")
    unknown = ctx.publish(ParcelPackedV1(parcel_id="p-2"), correlation_id="story-unheard")
    assert trace_of(later.traceparent) == trace_of(handled.traceparent)
    assert trace_of(unknown.traceparent) != trace_of(handled.traceparent)
