"""Credentials files told apart, and permissions derived from what each service declares
(the broker's side of it: tests/integration/test_bus_permissions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pizza.app import load
from pizza.eventing.transport import credentials
from pizza.eventing.transport.permissions import for_service


def test_a_seed_and_a_creds_file_are_told_apart_and_anything_else_refused(
        tmp_path: Path) -> None:
    seed = credentials.ensure_seed(tmp_path, "kitchen")
    assert credentials.load(seed).connect_options() == {"nkeys_seed": str(seed)}
    assert credentials.public_key(seed).startswith("U")

    creds = tmp_path / "kitchen.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n"
                     "------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n"
                     f"{seed.read_text().strip()}\n------END USER NKEY SEED------\n")
    assert credentials.load(creds).connect_options() == {"user_credentials": str(creds)}

    for text in ("", "not a key", "SUAAAAAAAAAAAAAAAA"):
        (tmp_path / "bad").write_text(text)
        with pytest.raises(credentials.BadCredentials):
            credentials.load(tmp_path / "bad")
    with pytest.raises(credentials.BadCredentials, match="cannot read"):
        credentials.load(tmp_path / "missing.nk")


def permissions() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {s.name: (for_service(s).publish, for_service(s).subscribe) for s in load()}


def test_each_service_publishes_its_own_events_and_the_commands_it_sends() -> None:
    allowed = permissions()
    orders, _ = allowed["orders"]
    assert "pizza.events.orders.>" in orders
    assert "pizza.commands.notifications.SendEmail.v1" in orders
    assert "pizza.replies.*" not in orders, "orders answers no command"
    notifications, _ = allowed["notifications"]
    assert "pizza.replies.*" in notifications, "it answers SendEmail"
    assert not any(s.startswith("pizza.commands.") for s in notifications)
    for name, (publish, subscribe) in allowed.items():
        assert subscribe == (f"_INBOX_{name}.>",)
        assert f"pizza.deadletters.{name}.>" in publish
        assert not [s for s in publish if s.startswith("pizza.events.")
                    and s != f"pizza.events.{name}.>"]
        assert not [s for s in publish if (".DELETE." in s and "CONSUMER" not in s)
                    or ".PURGE." in s or s in (">", "$JS.API.>")]


def test_each_service_reaches_only_its_own_queues() -> None:
    for name, (publish, _) in permissions().items():
        consumers = {s.removesuffix(".>").split(".")[-1] for s in publish
                     if s.startswith(("$JS.API.CONSUMER.", "$JS.ACK."))}
        assert consumers and all(c.startswith(f"{name}-") for c in consumers), consumers
    tracking, _ = permissions()["tracking"]
    assert "$JS.API.CONSUMER.MSG.NEXT.PIZZA_EVENTS.tracking-order-confirmed-v2" in tracking


def test_only_the_producer_of_personal_data_writes_its_keys() -> None:
    writers = {name for name, (publish, _) in permissions().items()
               if "$KV.PIZZA_KEYS.>" in publish}
    assert writers == {"orders"}


def test_a_source_that_the_subject_or_the_catalog_disproves_is_forged() -> None:
    from pizza.contracts.notifications import EmailSentV1, SendEmailV1
    from pizza.contracts.orders import OrderConfirmedV2
    from pizza.eventing.catalog import forgery

    event = OrderConfirmedV2.info
    assert forgery(event.subject, "orders", event) is None
    assert forgery(f"{event.subject}.retry.kitchen-open-ticket", "orders", event) is None
    assert "does not match the subject" in (forgery(event.subject, "kitchen", event) or "")
    answer = EmailSentV1.info  # on orders' reply subject, from notifications only
    assert forgery("pizza.replies.orders", "notifications", answer) is None
    assert "is not notifications" in (forgery("pizza.replies.orders", "kitchen", answer) or "")
    command = SendEmailV1.info  # its subject names the target, not the sender
    assert forgery(command.subject, "anyone", command) is None
    long = forgery(event.subject, "x" * 500, event) or ""
    assert 0 < len(long) < 400, "bounded, whatever the message claims"
