"""What a handler's Context puts in the metadata of the messages it sends."""

from __future__ import annotations

from typing import Any

import pytest

from pizza.eventing import Context, Event, event
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
