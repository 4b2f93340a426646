"""The one shape every message has on the wire: ``{"metadata": {...}, "data": {...}}``.

Metadata has the same schema across the whole company (CONTRACT.md section 3); data is
the payload of one type and version. A message is encoded once, when it is published
(into the outbox), and decoded once, when it is received: orjson does both, and pydantic
validates only the part that belongs to the message type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pizza.eventing.namespace import DEFAULT, Namespace


class MalformedMessage(ValueError):
    """The bytes are not an envelope we can read: a dead letter, never a retry."""


def new_id() -> str:
    return str(uuid.uuid4())


def format_time(moment: datetime) -> str:
    """RFC 3339 time in UTC with milliseconds and a ``Z``, as in CONTRACT.md."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def _normalise_time(value: Any) -> str:
    """CloudEvents tools rewrite the time (``.123000Z``, ``+00:00``): read it back to ours."""
    if isinstance(value, datetime):
        return format_time(value)
    try:
        return format_time(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise MalformedMessage(f"time {value!r} is not an RFC 3339 time") from None


@dataclass(slots=True)
class Metadata:
    """What every message carries, whatever its type (the metadata/data pattern)."""

    type: str
    version: int
    source: str
    id: str = field(default_factory=new_id)
    time: str = field(default_factory=utc_now)
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    reply_to: str | None = None

    def __post_init__(self) -> None:
        if self.correlation_id is None:
            # The first message of a story starts it: its own id names the story.
            self.correlation_id = self.id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "source": self.source,
            "time": self.time,
            "correlationId": self.correlation_id,
            "causationId": self.causation_id,
            "traceparent": self.traceparent,
            "replyTo": self.reply_to,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Metadata:
        try:
            kind, version, source = raw["type"], raw["version"], raw["source"]
            message_id, time = raw["id"], raw["time"]
        except KeyError as missing:
            raise MalformedMessage(f"metadata.{missing.args[0]} is missing") from None
        except TypeError:
            raise MalformedMessage("metadata must be an object") from None
        if (type(kind) is not str or type(source) is not str or type(version) is not int
                or version < 1 or type(message_id) is not str or not message_id):
            raise MalformedMessage(
                "metadata.type and .source must be strings, .version a positive integer, "
                ".id a non-empty string")
        get = raw.get
        correlation, causation = get("correlationId"), get("causationId")
        traceparent, reply_to = get("traceparent"), get("replyTo")
        # Refused at the edge, before anything is looked up, stored or logged. The usual
        # message passes one expression; only a refusal looks for the field to name.
        if not (len(message_id) <= 64 and len(kind) <= 64 and len(source) <= 64
                and type(time) is str and len(time) <= 40
                and (correlation is None or (type(correlation) is str and len(correlation) <= 64))
                and (causation is None or (type(causation) is str and len(causation) <= 64))
                and (traceparent is None or (type(traceparent) is str and len(traceparent) <= 64))
                and (reply_to is None or (type(reply_to) is str and len(reply_to) <= 255))):
            _refuse(raw)
        return cls(kind, version, source, message_id, time, correlation or message_id,
                   causation, traceparent, reply_to)


def _refuse(raw: Any) -> None:
    """Name the first metadata field over its bound (or not a string)."""
    for name in ("id", "type", "source", "time", *_OPTIONAL):
        value = raw.get(name)
        if value is not None and (type(value) is not str or len(value) > _LIMITS[name]):
            raise MalformedMessage(f"metadata.{name} must be a string of at most "
                                   f"{_LIMITS[name]} characters")
    raise MalformedMessage("metadata is out of bounds")  # not reached: the checks agree


# Bounds on metadata: ids are UUIDs (36), subjects fit the outbox's column (255).
_OPTIONAL = ("correlationId", "causationId", "traceparent", "replyTo")
_LIMITS = {"id": 64, "type": 64, "source": 64, "time": 40, "correlationId": 64,
           "causationId": 64, "traceparent": 64, "replyTo": 255}


@dataclass(slots=True)
class Envelope:
    """A message as it travels: metadata plus the payload as plain JSON data."""

    metadata: Metadata
    data: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps({"metadata": self.metadata.to_json(), "data": self.data})

    @classmethod
    def decode(cls, raw: bytes | str) -> Envelope:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedMessage(f"not JSON: {error}") from None
        if not isinstance(doc, dict) or "metadata" not in doc or "data" not in doc:
            raise MalformedMessage("an envelope is an object with 'metadata' and 'data'")
        data = doc["data"]
        if not isinstance(data, dict):
            raise MalformedMessage("data must be an object")
        return cls(Metadata.from_json(doc["metadata"]), data)

    # -- CloudEvents 1.0 structured mode -------------------------------------------------

    def to_cloudevent(self, namespace: Namespace = DEFAULT) -> dict[str, Any]:
        """The same message as a CloudEvents 1.0 structured JSON event, losslessly.

        Extension attribute names must be lower-case alphanumerics, so correlationId
        becomes ``correlationid``; ``pizzaversion`` keeps the integer version exact.
        ``type`` is ``<namespace>.<source>.<type>.v<version>``: the system's namespace
        (CONTRACT.md's ``pizza`` by default). The extension
        names stay ``pizzatype`` and ``pizzaversion`` in every namespace: they name the
        mapping, not the system.
        """
        meta = self.metadata
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": meta.id,
            "source": meta.source,
            "type": namespace.cloudevent_type(meta.source, meta.type, meta.version),
            "time": meta.time,
            "datacontenttype": "application/json",
            "pizzatype": meta.type,
            "pizzaversion": meta.version,
            "correlationid": meta.correlation_id,
            "data": self.data,
        }
        for name, value in (
            ("causationid", meta.causation_id),
            ("traceparent", meta.traceparent),
            ("replyto", meta.reply_to),
        ):
            if value is not None:
                event[name] = value
        return event

    @classmethod
    def from_cloudevent(cls, event: dict[str, Any]) -> Envelope:
        try:
            meta = Metadata(
                type=event["pizzatype"],
                version=int(event["pizzaversion"]),
                source=event["source"],
                id=event["id"],
                time=_normalise_time(event["time"]),
                correlation_id=event.get("correlationid"),
                causation_id=event.get("causationid"),
                traceparent=event.get("traceparent"),
                reply_to=event.get("replyto"),
            )
        except KeyError as missing:
            raise MalformedMessage(f"CloudEvent lacks {missing.args[0]}") from None
        return cls(meta, dict(event.get("data") or {}))
