"""Declaring messages: a typed class per type and version, and the registry of them all.

    @event("OrderPrepared", version=1, source="kitchen", description="...")
    class OrderPreparedV1(Event):
        order_id: str

Fields are snake_case in Python and camelCase on the wire. The registry gives each
message's JSON Schema and subject, and decodes a received envelope into its class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from pizza.eventing.envelope import Envelope, MalformedMessage
from pizza.eventing.namespace import DEFAULT, MAX_SUBJECT_LENGTH, Namespace, subject_is_valid

__all__ = ["MAX_SUBJECT_LENGTH", "subject_is_valid"]  # where callers have found them

Kind = Literal["event", "command", "reply"]
# The default namespace's prefixes (CONTRACT.md's), for code outside the kernel that
# names them; the kernel itself takes a Namespace (namespace.py).
EVENTS_PREFIX = DEFAULT.events
COMMANDS_PREFIX = DEFAULT.commands
REPLIES_PREFIX = DEFAULT.replies
DEAD_LETTERS_PREFIX = DEFAULT.dead_letters


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: ``*`` matches one token, ``>`` one or more trailing tokens."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(wanted) == len(tokens)


def is_reply_subject(subject: str, namespace: Namespace = DEFAULT) -> bool:
    """Where an answer may go: one of our services' reply subjects, and nowhere else."""
    return namespace.is_reply_subject(subject)


def forgery(subject: str, source: str, info: MessageInfo) -> str | None:
    """Why a received message's ``metadata.source`` is not who sent it, or None.

    Only what is proven is checked. The broker lets only a service publish on
    ``<namespace>.events.<itself>.>``, so an event's subject names its source (its third
    token in every namespace: a namespace is one token), and the catalog
    says who produces each event and answer (an answer comes from the command's target).
    A command's subject names its target, not its sender: nothing to check there.
    """
    if info.kind == "command":
        return None
    tokens = subject.split(".")
    if info.kind == "event" and (len(tokens) < 3 or tokens[2] != source):
        return (f"metadata.source {source[:64]!r} does not match the subject "
                f"{subject[:160]!r}")
    if source != info.owner:
        return (f"metadata.source {source[:64]!r} is not {info.owner}, which "
                f"{'publishes' if info.kind == 'event' else 'sends'} {info.type} "
                f"v{info.version}")
    return None


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the catalog knows about one type and version."""

    kind: Kind
    type: str
    version: int
    owner: str  # the producing service of an event or reply; the target of a command
    description: str = ""
    deprecated: date | None = None  # the sunset date of a deprecated version
    # Where it is published in the DEFAULT namespace (CONTRACT.md's ``pizza.*``); a
    # reply has no subject of its own (it goes to replyTo): the pattern of every reply
    # subject. A runtime routes by ``Namespace.subject(info)``, which is this in the
    # default namespace.
    subject: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "event":
            subject = f"{DEFAULT.events}.{self.owner}.{self.type}.v{self.version}"
        elif self.kind == "command":
            subject = f"{DEFAULT.commands}.{self.owner}.{self.type}.v{self.version}"
        else:
            subject = f"{DEFAULT.replies}.*"
        object.__setattr__(self, "subject", subject)

    @property
    def key(self) -> tuple[str, int]:
        return (self.type, self.version)


class Message(BaseModel):
    """The payload (``data``) of a message. Subclass through Event, Command or Reply."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )
    info: ClassVar[MessageInfo]

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Event(Message):
    """A fact that happened, named in the past tense; its producer knows no consumer."""


class Command(Message):
    """A request to one named service to do something, possibly answered on replyTo."""


class Reply(Message):
    """The answer to a command, sent to the command's replyTo."""


M = TypeVar("M", bound=type[Message])


@dataclass
class Registry:
    """Every message type and version the process knows, by (type, version)."""

    messages: dict[tuple[str, int], type[Message]] = field(default_factory=dict)

    def add(self, cls: type[Message]) -> None:
        known = self.messages.get(cls.info.key)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"{cls.info.type} v{cls.info.version} is declared twice")
        self.messages[cls.info.key] = cls

    def get(self, kind: str, version: int) -> type[Message] | None:
        return self.messages.get((kind, version))

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(sorted(self.messages.values(), key=lambda c: c.info.key))

    def schema(self, cls: type[Message]) -> dict[str, Any]:
        schema = cls.model_json_schema(by_alias=True)
        schema["title"] = f"{cls.info.type} v{cls.info.version}"
        if cls.info.description:
            schema["description"] = cls.info.description
        return schema

    def decode(self, envelope: Envelope, namespace: Namespace = DEFAULT) -> Message:
        """The typed payload of an envelope, or MalformedMessage if it is not one we know
        (a command's replyTo must be a reply subject of ``namespace``)."""
        meta = envelope.metadata
        cls = self.get(meta.type, meta.version)
        if cls is None:
            raise MalformedMessage(f"unknown message type {meta.type[:64]} v{meta.version}")
        if meta.reply_to is not None and (cls.info.kind != "command"
                                          or not namespace.is_reply_subject(meta.reply_to)):
            raise MalformedMessage(f"metadata.replyTo {meta.reply_to[:80]!r} is not a reply "
                                   f"subject ({namespace.replies}.<service>) of a command")
        try:
            message: Message = cls.__pydantic_validator__.validate_python(envelope.data)
            return message
        except ValidationError as error:
            raise MalformedMessage(
                f"{meta.type} v{meta.version} data is invalid: {_problems(error)}"
            ) from None


registry = Registry()


def _declare(kind: Kind, name: str, version: int, owner: str, description: str,
             deprecated: date | None) -> Callable[[M], M]:
    def declare(cls: M) -> M:
        cls.info = MessageInfo(kind, name, version, owner, description, deprecated)
        registry.add(cls)
        return cls

    return declare


def event(name: str, *, version: int, source: str, description: str = "",
          deprecated: date | None = None) -> Callable[[M], M]:
    """Declare an event type: published by ``source`` on <namespace>.events.<source>.<name>.v<n>."""
    return _declare("event", name, version, source, description, deprecated)


def command(name: str, *, version: int, target: str, description: str = "",
            deprecated: date | None = None) -> Callable[[M], M]:
    """Declare a command type: sent to ``target`` on <namespace>.commands.<target>.<name>.v<n>."""
    return _declare("command", name, version, target, description, deprecated)


def reply(name: str, *, version: int, source: str, description: str = "",
          deprecated: date | None = None) -> Callable[[M], M]:
    """Declare an answer to a command: sent by ``source`` to the command's replyTo."""
    return _declare("reply", name, version, source, description, deprecated)


def _problems(error: ValidationError) -> list[Any]:
    """What is wrong with a message's data, without the offending values: they may be
    huge or hostile, and this text is logged and stored with the dead letter."""
    return error.errors(include_url=False, include_input=False, include_context=False)
