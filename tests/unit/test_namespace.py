"""The namespace of a system on the bus: one prefix names every subject, stream, bucket,
header and inbox; the default is CONTRACT.md's names exactly, and a prefix that is not
one NATS token is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData

from pizza.eventing import Context, Event, Service, event
from pizza.eventing.catalog import registry
from pizza.eventing.context import Unpublishable
from pizza.eventing.envelope import Envelope, MalformedMessage, Metadata
from pizza.eventing.host import Runtime, ServiceHost
from pizza.eventing.namespace import DEFAULT, Namespace, stream_of
from pizza.eventing.transport.base import QueueSpec, unpublishable
from pizza.eventing.transport.memory import MemoryTransport
from pizza.eventing.transport.permissions import for_service

ACME = Namespace("acme")


@event("GlazeApplied", version=1, source="glazier")
class GlazeAppliedV1(Event):
    pot: int


def test_the_default_namespace_is_the_contracts_names() -> None:
    assert Namespace() == DEFAULT
    assert (DEFAULT.events, DEFAULT.commands, DEFAULT.replies, DEFAULT.dead_letters) == (
        "pizza.events", "pizza.commands", "pizza.replies", "pizza.deadletters")
    assert DEFAULT.streams == {"PIZZA_EVENTS": "pizza.events.>",
                               "PIZZA_COMMANDS": "pizza.commands.>",
                               "PIZZA_REPLIES": "pizza.replies.>",
                               "PIZZA_DEADLETTERS": "pizza.deadletters.>"}
    assert (DEFAULT.usage_bucket, DEFAULT.keys_bucket) == ("PIZZA_USAGE", "PIZZA_KEYS")
    assert [DEFAULT.dead_reason, DEFAULT.dead_error, DEFAULT.dead_attempts,
            DEFAULT.dead_subject, DEFAULT.dead_consumer] == [
        "Pizza-Dead-Reason", "Pizza-Dead-Error", "Pizza-Dead-Attempts",
        "Pizza-Original-Subject", "Pizza-Consumer"]
    assert DEFAULT.inbox_prefix("kitchen") == "_INBOX_kitchen"
    assert DEFAULT.subject(GlazeAppliedV1.info) == "pizza.events.glazier.GlazeApplied.v1"
    assert DEFAULT.reply_subject("orders") == "pizza.replies.orders"


def test_another_namespace_renames_everything_and_keeps_nothing_of_the_default() -> None:
    names = [ACME.events, ACME.commands, ACME.replies, ACME.dead_letters,
             *ACME.streams, *ACME.streams.values(), ACME.usage_bucket, ACME.keys_bucket,
             ACME.dead_reason, ACME.dead_subject, ACME.inbox_prefix("kitchen"),
             ACME.subject(GlazeAppliedV1.info), ACME.reply_subject("orders"),
             ACME.dead_letter_subject("kitchen", "open-ticket")]
    assert not [name for name in names if "pizza" in name.lower()]
    assert ACME.subject(GlazeAppliedV1.info) == "acme.events.glazier.GlazeApplied.v1"
    assert ACME.streams["ACME_EVENTS"] == "acme.events.>"
    assert ACME.dead_reason == "Acme-Dead-Reason"
    assert Namespace("blue-team").header_prefix == "Blue-Team"
    assert ACME.inbox_prefix("kitchen") != DEFAULT.inbox_prefix("kitchen")


@pytest.mark.parametrize("prefix", ["", "acme.prod", "acme*", "ac>me", "a b", " acme",
                                    "ACME", "acme\n", "é", "a" * 33, "acme~1", "$sys"])
def test_a_prefix_that_is_not_one_short_nats_token_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        Namespace(prefix)


@pytest.mark.parametrize("prefix", ["a", "acme", "team_2", "blue-team", "a" * 32])
def test_one_token_of_lower_case_letters_digits_underscore_and_dash_is_a_namespace(
        prefix: str) -> None:
    assert Namespace(prefix).events == f"{prefix}.events"


def test_declarations_in_the_default_terms_are_moved_into_the_namespace() -> None:
    assert ACME.local("pizza.events.glazier.>") == "acme.events.glazier.>"
    assert ACME.local("pizza.replies.orders") == "acme.replies.orders"
    assert ACME.local("acme.events.x") == "acme.events.x", "already its own"
    assert ACME.local("pizzas.events.x") == "pizzas.events.x", "another namespace's"
    assert DEFAULT.local("pizza.events.x") == "pizza.events.x"


def test_each_namespace_holds_only_its_own_subjects() -> None:
    assert ACME.stream_for("acme.events.glazier.GlazeApplied.v1") == "ACME_EVENTS"
    with pytest.raises(ValueError):
        ACME.stream_for("pizza.events.glazier.GlazeApplied.v1")
    with pytest.raises(ValueError):
        DEFAULT.stream_for("acme.events.glazier.GlazeApplied.v1")
    assert stream_of("acme.deadletters.x.y") == "ACME_DEADLETTERS"
    assert stream_of("pizza.replies.orders") == "PIZZA_REPLIES"
    assert unpublishable("pizza.events.a.B.v1", b"{}", namespace=ACME) is not None
    assert unpublishable("acme.events.a.B.v1", b"{}", namespace=ACME) is None
    assert ACME.is_reply_subject("acme.replies.orders")
    assert not ACME.is_reply_subject("pizza.replies.orders")
    assert not ACME.is_reply_subject("acme.replies.orders.x")
    assert not DEFAULT.is_reply_subject("acme.replies.orders")


def test_a_command_must_ask_for_its_answer_on_a_reply_subject_of_its_own_system() -> None:
    from pizza.eventing import Command, command

    @command("FireKiln", version=1, target="kiln")
    class FireKilnV1(Command):
        pot: int

    try:
        envelope = Envelope(Metadata("FireKiln", 1, "glazier",
                                     reply_to="pizza.replies.glazier"), {"pot": 1})
        assert registry.decode(envelope).pot == 1  # type: ignore[attr-defined]
        with pytest.raises(MalformedMessage):
            registry.decode(envelope, ACME)
        envelope.metadata.reply_to = "acme.replies.glazier"
        assert registry.decode(envelope, ACME).pot == 1  # type: ignore[attr-defined]
    finally:
        registry.messages.pop(FireKilnV1.info.key)


def test_the_cloudevent_type_is_prefixed_by_the_namespace() -> None:
    envelope = Envelope(Metadata("GlazeApplied", 1, "glazier"), {"pot": 3})
    assert envelope.to_cloudevent()["type"] == "pizza.glazier.GlazeApplied.v1"
    acme = envelope.to_cloudevent(ACME)
    assert acme["type"] == "acme.glazier.GlazeApplied.v1"
    assert Envelope.from_cloudevent(acme) == envelope


def glazier() -> Service:
    service = Service("glazier", tables=MetaData())
    service.declare_publishes(GlazeAppliedV1)

    @service.handles(GlazeAppliedV1, name="admire")
    async def admire(event: GlazeAppliedV1, ctx: Context) -> None:
        return None

    return service


def test_the_brokers_users_of_a_namespace_may_touch_only_that_systems_names() -> None:
    service = glazier()
    acme = for_service(service, ACME)
    assert "acme.events.glazier.>" in acme.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.ACME_EVENTS.glazier-admire" in acme.publish
    assert "$KV.ACME_USAGE.glazier" in acme.publish
    assert acme.subscribe == ("_INBOX_acme~glazier.>",)
    assert not [subject for subject in acme.publish if "pizza" in subject.lower()]
    default = for_service(service)
    assert "pizza.events.glazier.>" in default.publish
    assert not [subject for subject in default.publish if "acme" in subject.lower()]


async def test_a_memory_transport_of_a_namespace_keeps_its_own_streams() -> None:
    transport = MemoryTransport(namespace=ACME)
    assert set(transport._streams) == set(ACME.streams)
    queue = await transport.queue(QueueSpec("q", "pizza.events.glazier.GlazeApplied.v1",
                                            start="all"))  # a declaration: moved to acme
    ctx = Context("glazier", None, namespace=ACME)  # type: ignore[arg-type]
    ctx.publish(GlazeAppliedV1(pot=7))
    assert [m.subject for m in ctx.outgoing] == ["acme.events.glazier.GlazeApplied.v1"]
    assert await transport.publish(ctx.outgoing) == [None]
    assert [d.subject for d in await queue.fetch(10, timeout=0.1)] == [
        "acme.events.glazier.GlazeApplied.v1"]
    default = Context("glazier", None)  # type: ignore[arg-type]
    default.publish(GlazeAppliedV1(pot=8))  # the default namespace's subject
    refused = await transport.publish(default.outgoing)
    assert refused[0] is not None and "no stream" in refused[0]


def test_a_context_refuses_a_reply_to_outside_its_system() -> None:
    from pizza.eventing import Command, command

    @command("GlazePot", version=1, target="glazier")
    class GlazePotV1(Command):
        pot: int

    try:
        ctx = Context("potter", None, namespace=ACME)  # type: ignore[arg-type]
        meta = ctx.send(GlazePotV1(pot=1))
        assert meta.reply_to == "acme.replies.potter"
        assert ctx.outgoing[0].subject == "acme.commands.glazier.GlazePot.v1"
        with pytest.raises(Unpublishable):
            ctx.send(GlazePotV1(pot=2), reply_to="pizza.replies.potter")
    finally:
        registry.messages.pop(GlazePotV1.info.key)


def test_a_host_or_runtime_refuses_a_namespace_its_transport_does_not_use() -> None:
    transport = MemoryTransport(namespace=ACME)
    with pytest.raises(ValueError, match="acme"):
        ServiceHost(glazier(), transport, namespace=DEFAULT)
    with pytest.raises(ValueError, match="acme"):
        Runtime([glazier()], transport=transport, namespace=Namespace("other"))
    assert Runtime([glazier()], transport=transport).namespace == ACME
