"""Notifications: SendEmail over real SMTP (an aiosmtpd server on a free port), answered
EmailSent or EmailFailed on replyTo; the SMTP sink and its mailbox route."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import delete

from harness import System, running
from pizza import config
from pizza.contracts.notifications import SendEmailV1
from pizza.eventing import Backoff
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.storage import inbox
from pizza.eventing.transport.base import Outgoing
from pizza.services.notifications import service as notifications
from pizza.services.notifications import start_sink

REPLY_TO = "pizza.replies.orders"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_email(to: str = "ada@example.com", subject: str = "Your receipt",
               body: str = "Thank you for your order.") -> Envelope:
    command = SendEmailV1(to=to, sender="orders@plant-based.pizza", subject=subject,
                          body=body)
    info = command.info
    return Envelope(Metadata(type=info.type, version=info.version, source="orders",
                             reply_to=REPLY_TO), command.to_data())


async def deliver(system: System, *envelopes: Envelope, nats_suffix: str = "",
                  settle: bool = True) -> None:
    """Put commands on the bus in one go; a ``nats_suffix`` gets a copy past the broker's
    de-duplication, as a redelivery does."""
    await system.transport.publish([
        Outgoing(env.metadata.id + nats_suffix, SendEmailV1.info.subject, env.encode())
        for env in envelopes])
    if settle:
        await system.settle()


def replies(system: System) -> list[dict[str, Any]]:
    return system.published(REPLY_TO)


async def mailbox(system: System, to: str | None = None) -> list[dict[str, Any]]:
    response = await system.http.get("/api/mailbox", params={"to": to} if to else None)
    assert response.status_code == 200, response.text
    return list(response.json())


async def eventually(check: Callable[[], Any], timeout: float = 3.0) -> None:
    """Until ``check()`` (or the awaitable it returns) is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("it did not happen in time")
        await asyncio.sleep(0.02)


async def mail_arrived(system: System, count: int) -> list[dict[str, Any]]:
    """The mailbox once it holds ``count`` letters (the sink stores just after its 250)."""
    letters: list[dict[str, Any]] = []

    async def enough() -> bool:
        letters[:] = await mailbox(system)
        return len(letters) >= count

    await eventually(enough)
    return letters


@pytest.fixture(autouse=True)
def fresh_settings() -> Any:
    config.reset()
    yield
    config.reset()


@pytest.fixture
def smtp_port() -> int:
    port = free_port()
    config.configure(smtp_host="127.0.0.1", smtp_port=port)
    return port


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    subscription = notifications.subscriptions["send-email"]
    monkeypatch.setattr(subscription, "backoff", Backoff(initial=0.05, factor=1.0))


@pytest.fixture
async def system(tmp_path: Path, smtp_port: int,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[System]:
    """Notifications with its SMTP sink started by the on_start hook (PIZZA_SMTP_SINK=1)."""
    config.configure(smtp_sink=True)
    async with running([notifications], tmp_path) as running_system:
        yield running_system


def stats(system: System) -> Any:
    return system.runtime.hosts["notifications"].consumers[0].stats


async def test_an_email_is_sent_over_smtp_and_answered_email_sent(system: System) -> None:
    command = send_email()
    await deliver(system, command)

    [reply] = replies(system)
    assert reply["metadata"]["type"] == "EmailSent"
    assert reply["metadata"]["causationId"] == command.metadata.id
    assert reply["metadata"]["correlationId"] == command.metadata.correlation_id
    assert reply["data"] == {"messageId": f"<{command.metadata.id}@plant-based.pizza>"}
    [letter] = await mail_arrived(system, 1)
    assert letter["receivedAt"].endswith("Z")
    del letter["receivedAt"]
    assert letter == {"to": "ada@example.com", "from": "orders@plant-based.pizza",
                      "subject": "Your receipt", "body": "Thank you for your order."}


async def test_a_refused_recipient_is_answered_email_failed(system: System) -> None:
    await deliver(system, send_email(to="nobody@example.invalid"))

    [reply] = replies(system)
    assert reply["metadata"]["type"] == "EmailFailed"
    assert "550" in reply["data"]["reason"]
    assert stats(system).retried == 0  # a permanent refusal is not retried
    assert system.published("pizza.deadletters.") == []
    assert await mailbox(system) == []


async def test_a_header_with_a_line_break_fails_without_sending(system: System) -> None:
    await deliver(system, send_email(subject="Hello\r\nBcc: everyone@example.com"))

    [reply] = replies(system)
    assert reply["metadata"]["type"] == "EmailFailed"
    # A marker through the same queue and the same SMTP server: once it has arrived, a
    # letter sent for the first command would have arrived before it.
    await deliver(system, send_email(to="marker@example.com"))
    assert [letter["to"] for letter in await mail_arrived(system, 1)] == ["marker@example.com"]


async def test_a_command_sends_one_email_however_often_it_arrives(system: System) -> None:
    command = send_email()
    await deliver(system, command)
    await deliver(system, command, nats_suffix="-redelivered")  # caught by the inbox
    host = system.runtime.hosts["notifications"]
    async with host.db.begin() as conn:  # forget everything the inbox knew
        await conn.execute(delete(inbox))
    await deliver(system, command, nats_suffix="-after-inbox-pruned")
    # All three copies were taken off the queue: one handled, one caught by the inbox,
    # and the last handled again (the inbox had forgotten it) without a second letter.
    assert (stats(system).handled, stats(system).duplicates) == (2, 1)
    await deliver(system, send_email(to="marker@example.com"))  # arrives after any copy
    letters = await mail_arrived(system, 2)

    assert [letter["to"] for letter in letters] == ["ada@example.com", "marker@example.com"]
    assert [r["metadata"]["type"] for r in replies(system)] == ["EmailSent"] * 2


async def test_an_unreachable_server_is_retried_until_it_answers(
        tmp_path: Path, smtp_port: int, quick_retries: None) -> None:
    async with running([notifications], tmp_path) as system:  # no sink: nothing listens
        await deliver(system, send_email(), settle=False)
        await eventually(lambda: stats(system).retried >= 2)
        assert replies(system) == []

        await start_sink("127.0.0.1", smtp_port)
        await system.settle()

        assert [r["metadata"]["type"] for r in replies(system)] == ["EmailSent"]
        assert len(await mail_arrived(system, 1)) == 1


async def test_after_its_deadline_a_temporary_failure_is_answered_email_failed(
        tmp_path: Path, smtp_port: int, quick_retries: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_EMAIL_GIVE_UP_SECONDS", "0.3")
    async with running([notifications], tmp_path) as system:  # no sink: nothing listens
        await deliver(system, send_email())

        [reply] = replies(system)
        assert reply["metadata"]["type"] == "EmailFailed"
        assert reply["data"]["reason"].startswith("gave up after")
        assert stats(system).retried >= 2
        assert system.published("pizza.deadletters.") == []


class FlakyServer:
    """An SMTP server that greylists each ``flaky`` recipient once (451), and counts."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.greylisted: set[str] = set()

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str,
                          _options: Any) -> str:
        if address.startswith("flaky") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


async def test_a_batch_retried_for_one_email_sends_the_others_once(
        tmp_path: Path, smtp_port: int) -> None:
    server = FlakyServer()
    controller = Controller(server, hostname="127.0.0.1", port=smtp_port)
    await asyncio.to_thread(controller.start)
    try:
        async with running([notifications], tmp_path) as system:
            # One batch: the second email's 451 rolls the whole batch back.
            await deliver(system, send_email(to="ok@example.com"),
                          send_email(to="flaky@example.com"))

            assert sorted(server.received) == ["flaky@example.com", "ok@example.com"]
            assert [r["metadata"]["type"] for r in replies(system)] == ["EmailSent"] * 2
    finally:
        await asyncio.to_thread(controller.stop)


async def test_the_mailbox_lists_mail_by_address_and_keeps_it_across_restarts(
        tmp_path: Path, smtp_port: int) -> None:
    config.configure(smtp_sink=True)
    async with running([notifications], tmp_path) as system:
        await aiosmtplib.send("Subject: Hi both\r\nFrom: x@example.com\r\n\r\nHello\r\n",
                              sender="x@example.com",
                              recipients=["ada@example.com", "Bob@Example.com"],
                              hostname="127.0.0.1", port=smtp_port)
        await deliver(system, send_email(to="ada@example.com", subject="Your receipt"))
        await mail_arrived(system, 3)

    async with running([notifications], tmp_path) as system:
        everything = await mailbox(system)
        for_ada = await mailbox(system, "ada@example.com")
        for_bob = await mailbox(system, "bob@example.com")

    assert [(x["to"], x["subject"]) for x in everything] == [
        ("ada@example.com", "Hi both"), ("Bob@Example.com", "Hi both"),
        ("ada@example.com", "Your receipt")]
    assert [x["subject"] for x in for_ada] == ["Hi both", "Your receipt"]
    assert [(x["from"], x["body"]) for x in for_bob] == [("x@example.com", "Hello")]
