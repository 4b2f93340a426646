"""What a handler or an HTTP command sees: one transaction, and a way to send messages.

Messages sent through a Context are not published at once: they become outbox rows when
the transaction commits, together with the business writes (and, in a handler, the inbox
row of the message being handled). Correlation and causation are filled in here: a
message caused by another inherits its correlationId and names it as its causationId.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pizza.eventing import personal, tracing
from pizza.eventing.catalog import Command, Event, Message, Reply
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.storage import AsyncConnection
from pizza.eventing.transport.base import Outgoing, unpublishable


class Reject(Exception):
    """Raise in a handler for a message that can never succeed: dead-lettered, no retry."""


class Unpublishable(Reject):
    """A message that the broker could never take (its subject, its size): refused when
    it is written, so the writer fails, never the relay later."""


def reply_subject(service: str, namespace: Namespace = DEFAULT) -> str:
    """Where a service receives the answers to the commands it sends."""
    return namespace.reply_subject(service)


@dataclass
class Transaction:
    """What the contexts of one transaction share (a consumer's batch runs its handlers in
    one): work to do once inside it, after every handler and before the commit."""

    flushes: dict[Any, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    state: dict[Any, Any] = field(default_factory=dict)  # for whoever registers a flush

    async def flush(self) -> None:
        """Run the registered flushes, each once, in the order they were registered."""
        while self.flushes:
            key = next(iter(self.flushes))
            await self.flushes.pop(key)()


@dataclass
class Context:
    service: str
    db: AsyncConnection
    cause: Metadata | None = None  # the message being handled, if any
    correlation_id: str | None = None  # for a new story started by an HTTP command
    outgoing: list[Outgoing] = field(default_factory=list)
    committed: list[Callable[[], None]] = field(default_factory=list)
    # Whose personal data the handled message carried (their key's reference, see
    # personal.subject_ref), or None: what a service stores to erase it later.
    data_subject: str | None = None
    namespace: Namespace = DEFAULT  # the system whose subjects its messages go to
    # What the handler's step before the transaction returned (Service.handles(before=)).
    prepared: Any = None
    # Shared by every context of this transaction (before_commit).
    transaction: Transaction = field(default_factory=Transaction)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed (never if it rolls back).

        For in-process signals such as "this document changed": a listener told before
        the commit would read the old state.
        """
        self.committed.append(callback)

    def before_commit(self, key: Any, flush: Callable[[], Awaitable[None]]) -> None:
        """Run ``flush`` inside this transaction once every handler of it has run, just
        before the commit: writes gathered from several messages of a batch, made at once
        (tracking folds a batch's events into each order's document with one read and
        one write). Once per ``key`` per transaction; its failure is the transaction's.
        ``transaction.state`` is where to gather."""
        self.transaction.flushes.setdefault(key, flush)

    @property
    def story_id(self) -> str | None:
        """The correlationId messages sent now carry: the cause's, or this new story's."""
        return self.cause.correlation_id if self.cause else self.correlation_id

    def publish(self, event: Event, *, correlation_id: str | None = None,
                caused_by: str | None = None, personal_data_of: str | None = None,
                erases: str | None = None) -> Metadata:
        """Publish an event (when the transaction commits).

        ``correlation_id`` continues a story known by its id when no message caused this
        one, e.g. a click in the kitchen about an order whose id was stored with the ticket.
        ``caused_by``: likewise, the id of the message this one follows on from (its
        causationId), e.g. the OrderConfirmed that opened the ticket a click moves on;
        a message being handled is the cause whatever this says.
        ``personal_data_of``: whose personal fields it carries (sealed with their key).
        ``erases``: the data subject this event forgets; their key is purged just before
        it goes out, after everything written before it (see personal.py).
        """
        if not isinstance(event, Event):
            raise TypeError(f"publish() takes an Event, not {type(event).__name__}")
        if event.info.owner != self.service:
            raise ValueError(f"{self.service} cannot publish {event.info.type}: "
                             f"{event.info.owner} owns it")
        return self._emit(event, self.namespace.subject(event.info), reply_to=None,
                          correlation_id=correlation_id, caused_by=caused_by,
                          personal_data_of=personal_data_of, erases=erases)

    def send(self, command: Command, *, reply_to: str | None = "",
             personal_data_of: str | None = None) -> Metadata:
        """Send a command to its service; the answer comes to this service's reply subject.

        ``reply_to=None`` sends it without asking for an answer. ``personal_data_of``:
        whose personal fields it carries (required if it has any).
        """
        if not isinstance(command, Command):
            raise TypeError(f"send() takes a Command, not {type(command).__name__}")
        namespace = self.namespace
        answer_to = namespace.reply_subject(self.service) if reply_to == "" else reply_to
        if answer_to is not None and not namespace.is_reply_subject(answer_to):
            raise Unpublishable(f"replyTo {answer_to[:80]!r} is not a reply subject")
        return self._emit(command, namespace.subject(command.info), reply_to=answer_to,
                          personal_data_of=personal_data_of)

    def reply(self, answer: Reply) -> Metadata | None:
        """Answer the command being handled on its replyTo; nothing if it asked for none."""
        if self.cause is None:
            raise RuntimeError("reply() is for a handler of a command")
        if not self.cause.reply_to:
            return None
        if not self.namespace.is_reply_subject(self.cause.reply_to):
            raise Unpublishable(f"cannot answer on {self.cause.reply_to[:80]!r}: "
                                "not a reply subject")
        return self._emit(answer, self.cause.reply_to, reply_to=None)

    def _emit(self, message: Message, subject: str, reply_to: str | None,
              correlation_id: str | None = None, caused_by: str | None = None,
              personal_data_of: str | None = None, erases: str | None = None) -> Metadata:
        info = message.info
        personal_fields = personal.personal_fields(type(message))
        if personal_fields and not personal_data_of:
            raise ValueError(f"{info.type} v{info.version} carries personal data: say whose "
                             "(personal_data_of=...)")
        meta = Metadata(
            type=info.type,
            version=info.version,
            source=self.service,
            correlation_id=correlation_id or self.story_id,
            causation_id=self.cause.id if self.cause else caused_by,
            reply_to=reply_to,
        )
        meta.traceparent = tracing.for_message(
            self.service, subject, meta.id, story=meta.correlation_id,
            acting_on=correlation_id or self.correlation_id,
            cause=self.cause.traceparent if self.cause else None)
        payload = Envelope(meta, message.to_data()).encode()
        refusal = unpublishable(subject, payload, namespace=self.namespace)
        if refusal is not None:
            raise Unpublishable(f"{info.type} v{info.version}: {refusal}")
        # The relay seals the personal fields (and purges an erased key) as it publishes:
        # writing here never needs the key store.
        if personal_fields and personal_data_of:
            payload = personal.to_seal(payload, personal_data_of)
        if erases:
            payload = personal.to_erase(payload, erases)
        self.outgoing.append(Outgoing(meta.id, subject, payload, meta.traceparent))
        return meta


def run_commit_callbacks(contexts: list[Context]) -> None:
    for ctx in contexts:
        for callback in ctx.committed:
            try:
                callback()
            except Exception:  # a listener's failure is not the transaction's
                logging.getLogger("pizza.eventing").exception("on_commit callback failed")
