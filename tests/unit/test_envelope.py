"""The envelope: metadata/data on the wire, decoded once, and its CloudEvents twin."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from pizza.eventing.envelope import Envelope, MalformedMessage, Metadata


def sample() -> Envelope:
    meta = Metadata(type="OrderConfirmed", version=2, source="orders",
                    causation_id="c-1", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                    reply_to="pizza.replies.orders")
    return Envelope(meta, {"orderId": "o-1", "orderValue": {"amount": 12.5, "currency": "GBP"}})


def test_wire_shape_is_the_contract() -> None:
    doc = orjson.loads(sample().encode())
    assert set(doc) == {"metadata", "data"}
    assert set(doc["metadata"]) == {"id", "type", "version", "source", "time", "correlationId",
                                    "causationId", "traceparent", "replyTo"}
    assert doc["metadata"]["time"].endswith("Z")
    assert doc["metadata"]["correlationId"] == doc["metadata"]["id"], "a story starts here"


def test_decode_reverses_encode() -> None:
    envelope = sample()
    assert Envelope.decode(envelope.encode()) == envelope


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b'{"data": {}}', b'{"metadata": {}, "data": {}}',
    b'{"metadata": {"id": "x", "type": "T", "version": "1", "source": "s", "time": "t"},'
    b' "data": {}}',
    b'{"metadata": {"id": "x", "type": "T", "version": 1, "source": "s", "time": "t"},'
    b' "data": []}',
])
def test_malformed_bytes_are_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(MalformedMessage) as refused:
        Envelope.decode(raw)
    assert str(refused.value)


def test_cloudevents_round_trip_through_the_official_sdk() -> None:
    envelope = sample()
    structured = envelope.to_cloudevent()
    assert structured["type"] == "pizza.orders.OrderConfirmed.v2"
    assert structured["correlationid"] == envelope.metadata.correlation_id

    # Through the SDK: parse our JSON into its CloudEvent (it validates), write it again.
    parsed = JSONFormat().read(None, orjson.dumps(structured))
    assert parsed.get_extension("correlationid") == envelope.metadata.correlation_id
    written = orjson.loads(JSONFormat().write(parsed))
    back = Envelope.from_cloudevent(written)
    assert back == envelope


@pytest.mark.parametrize("field,value", [
    ("id", "x" * 100_000),
    ("correlationId", "c" * 65),
    ("replyTo", "pizza.replies." + "r" * 300),
    ("traceparent", ["not", "a", "string"]),
    ("time", 12),
])
def test_hostile_metadata_is_malformed_at_the_edge(field: str, value: object) -> None:
    """Huge or mistyped metadata is refused while decoding, before any handler, inbox or
    log line sees it."""
    doc = orjson.loads(sample().encode())
    doc["metadata"][field] = value
    with pytest.raises(MalformedMessage, match=f"metadata.{field}"):
        Envelope.decode(orjson.dumps(doc))


@pytest.mark.parametrize("reply_to", [
    "pizza.events.orders.OrderConfirmed.v1",  # would publish an answer as an event
    "pizza.deadletters.orders.x",             # would forge a dead letter
    "pizza.replies.*",                        # a wildcard
    "elsewhere",                              # no stream holds it: jammed the outbox
])
def test_a_command_must_ask_for_its_answer_on_a_reply_subject(reply_to: str) -> None:
    from pizza.contracts.notifications import SendEmailV1
    from pizza.eventing.catalog import registry

    meta = Metadata(type="SendEmail", version=1, source="orders", reply_to=reply_to)
    data = SendEmailV1(to="a@example.com", sender="b@example.com", subject="s",
                       body="b").to_data()
    with pytest.raises(MalformedMessage, match="replyTo"):
        registry.decode(Envelope(meta, data))
    meta.reply_to = "pizza.replies.orders"
    assert isinstance(registry.decode(Envelope(meta, data)), SendEmailV1)
