"""Notifications: SendEmail over real SMTP (an aiosmtpd server on a free port), answered
EmailSent or EmailFailed on replyTo; the SMTP sink and its mailbox route.

The handler only records the email; the sender sends it after the commit, with no
transaction open, and answers then (the outbox pattern applied to SMTP)."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

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
from pizza.eventing.transport.embedded import free_port
from pizza.services.notifications import create as notifications
from pizza.services.notifications import mailbox as sink
from pizza.services.notifications import outgoing, sender, start_sink
from pizza.services.notifications.mailer import compose

REPLY_TO = "pizza.replies.orders"


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
        await sent_and_answered(system)


async def sent_and_answered(system: System) -> None:
    """Every command handled, every recorded email sent (or failed) and its answer on
    the bus: the queues, the emails to send and the outboxes all empty."""
    host = system.runtime.hosts["notifications"]
    await system.settle()
    await eventually(lambda: _none_pending(host.db), timeout=5.0)
    await system.settle()


async def _none_pending(db: Any) -> bool:
    return await outgoing.pending(db) == 0


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
    monkeypatch.setattr(sender, "BACKOFF", Backoff(initial=0.05, factor=1.0))
    monkeypatch.setattr(sender, "SERVER_BACKOFF", Backoff(initial=0.05, factor=1.0))


@pytest.fixture
async def system(tmp_path: Path, smtp_port: int,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[System]:
    """Notifications with its SMTP sink started by the on_start hook (PIZZA_SMTP_SINK=1)."""
    config.configure(smtp_sink=True)
    async with running([notifications], tmp_path) as running_system:
        yield running_system


def stats(system: System) -> Any:
    return system.runtime.hosts["notifications"].consumers[0].stats


def sent_stats(system: System) -> sender.SenderStats:
    running_sender = system.service("notifications").sender.current()
    assert running_sender is not None
    return running_sender.stats


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
    assert sent_stats(system).retried == 0
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
        await eventually(lambda: sent_stats(system).retried >= 2)
        assert replies(system) == []
        assert stats(system).retried == 0  # the command was handled once: recorded

        started = await start_sink(system.service("notifications"), "127.0.0.1", smtp_port)
        try:
            await sent_and_answered(system)

            assert [r["metadata"]["type"] for r in replies(system)] == ["EmailSent"]
            assert len(await mail_arrived(system, 1)) == 1
            assert system.published("pizza.deadletters.") == []
        finally:
            await started.stop()


async def test_after_its_deadline_a_temporary_failure_is_answered_email_failed(
        tmp_path: Path, smtp_port: int, quick_retries: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_EMAIL_GIVE_UP_SECONDS", "0.8")  # >= 2 retries on a busy machine
    async with running([notifications], tmp_path) as system:  # no sink: nothing listens
        await deliver(system, send_email())

        [reply] = replies(system)
        assert reply["metadata"]["type"] == "EmailFailed"
        assert reply["data"]["reason"].startswith("gave up after")
        assert sent_stats(system).retried >= 2
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
            # The second email's 451 puts it back for later; the first is not sent again.
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


class WatchingServer:
    """An SMTP server that, while it holds each email's DATA, looks whether the
    notifications database takes a write transaction (none of ours is open), from
    another connection, as another program would."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.writable: list[bool] = []

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        self.writable.append(await asyncio.to_thread(self._takes_a_write))
        return "250 OK"

    def _takes_a_write(self, tries: int = 20) -> bool:
        for _ in range(tries):  # another short write of the service may be under way
            connection = sqlite3.connect(self.database, timeout=0, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                pass
            finally:
                connection.close()
            threading.Event().wait(0.05)
        return False


async def test_no_transaction_is_open_while_the_smtp_server_has_the_email(
        tmp_path: Path, smtp_port: int) -> None:
    server = WatchingServer(tmp_path / "notifications.db")
    controller = Controller(server, hostname="127.0.0.1", port=smtp_port)
    await asyncio.to_thread(controller.start)
    try:
        async with running([notifications], tmp_path) as system:
            await deliver(system, send_email(to="ada@example.com"),
                          send_email(to="bob@example.com"))

            assert [r["metadata"]["type"] for r in replies(system)] == ["EmailSent"] * 2
    finally:
        await asyncio.to_thread(controller.stop)
    assert server.writable == [True, True]


def first_mark_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first row the sender marks raises: the emails are with the SMTP server, their
    rows not marked, as when the process dies there or the database goes away."""
    real_finish = outgoing.finish
    marks: list[str] = []

    async def crash_once(conn: Any, email: outgoing.OutgoingEmail, **kw: Any) -> bool:
        marks.append(email.command.id)
        if len(marks) == 1:
            raise RuntimeError("the process dies here")
        return await real_finish(conn, email, **kw)

    monkeypatch.setattr(outgoing, "finish", crash_once)


def letters_stored(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Message-ID of every letter the sink stores, repeats included, as it stores it."""
    real_store = sink.store
    stored: list[str] = []

    async def counting_store(db: Any, letters: list[sink.Letter]) -> None:
        stored.extend(letter.message_id or "" for letter in letters)
        await real_store(db, letters)

    monkeypatch.setattr(sink, "store", counting_store)
    return stored


async def test_a_crash_between_the_send_and_the_mark_shows_one_letter_and_one_answer(
        system: System, monkeypatch: pytest.MonkeyPatch, quick_retries: None) -> None:
    first_mark_fails(monkeypatch)
    stored = letters_stored(monkeypatch)
    command = send_email()
    await deliver(system, command)

    message_id = f"<{command.metadata.id}@plant-based.pizza>"
    assert stored == [message_id, message_id]  # it was sent again, as it is after a crash
    [reply] = replies(system)
    assert (reply["metadata"]["type"], reply["data"]) == ("EmailSent",
                                                          {"messageId": message_id})
    assert reply["metadata"]["causationId"] == command.metadata.id
    [letter] = await mailbox(system)
    assert letter["subject"] == "Your receipt"
    assert system.published("pizza.deadletters.") == []


async def test_a_batch_whose_marks_fail_is_sent_again_and_each_answered_once(
        system: System, monkeypatch: pytest.MonkeyPatch, quick_retries: None) -> None:
    """The sender marks a batch's rows and answers them in one transaction: when that
    fails, every email of the batch is given back and sent again (same Message-ID), and
    each command gets one answer, caused by it."""
    first_mark_fails(monkeypatch)
    stored = letters_stored(monkeypatch)
    commands = [send_email(to=f"guest{n}@example.com") for n in range(3)]
    await deliver(system, *commands)

    ids = {f"<{c.metadata.id}@plant-based.pizza>": c.metadata.id for c in commands}
    assert set(stored) == set(ids)
    assert len(stored) > len(ids)  # what the failed transaction covered was sent again
    answered = sorted((r["metadata"]["causationId"], r["data"]["messageId"])
                      for r in replies(system))
    assert answered == sorted((command_id, message_id)
                              for message_id, command_id in ids.items())
    assert sorted(letter["to"] for letter in await mailbox(system)) == [
        f"guest{n}@example.com" for n in range(3)]
    assert system.published("pizza.deadletters.") == []


async def test_the_sink_stores_a_letter_before_it_answers(
        system: System, smtp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_store = sink.store

    async def slow_store(db: Any, letters: list[sink.Letter]) -> None:
        await asyncio.sleep(0.3)
        await real_store(db, letters)

    monkeypatch.setattr(sink, "store", slow_store)
    await aiosmtplib.send("Subject: Hi\r\nFrom: x@example.com\r\n\r\nHello\r\n",
                          sender="x@example.com", recipients=["ada@example.com"],
                          hostname="127.0.0.1", port=smtp_port)

    # The 250 came: the letter is there now, not moments later.
    assert [letter["subject"] for letter in await mailbox(system)] == ["Hi"]


def _emails_of_every_shape() -> list[bytes]:
    """Ours (compose: RFC 2047 words folded over lines, base64 UTF-8, RFC 6532 raw UTF-8),
    and other clients' (multipart with HTML and attachments, quoted-printable, Latin-1)."""
    ours = [compose(SendEmailV1(to=to, sender=sender, subject=subject, body=body), f"<{i}@x>")
            for i, (to, sender, subject, body) in enumerate([
                ("ann@example.com", "Plant-Based Pizza <orders@plant-based.pizza>",
                 "Your receipt", "Thanks!\nTotal: £12.00\n"),
                ("Zoë Ünal <zoe@example.com>", "Pizzéria <orders@plant-based.pizza>",
                 "Grüße aus der Küche — " * 6, "ascii\nlines\n" * 40),
                ("zoë@exämple.com", "Zoë <zoë@exämple.com>", "trailing space ", "é" * 3000),
            ])]
    alternative = EmailMessage()
    alternative["From"], alternative["Subject"] = "Ann <a@example.com>", "hello  there"
    alternative.set_content("plain wins\n")
    alternative.add_alternative("<p>html loses</p>", subtype="html")
    alternative.add_attachment(b"PNG", maintype="image", subtype="png", filename="a.png")
    html_only = EmailMessage()
    html_only["Subject"] = "html only"
    html_only.set_content("<b>bold</b>", subtype="html")
    html_only.add_attachment("not the body\n", filename="notes.txt")
    printable = EmailMessage()
    printable["From"], printable["Subject"] = "Bob <b@example.com>", "Grüße"
    printable.set_content("Grüße, Bob\n", cte="quoted-printable")
    latin = EmailMessage()
    latin["Subject"] = "latin"
    latin.set_content("café\n", charset="latin-1")
    return [*ours, *(m.as_bytes() for m in (alternative, html_only, printable, latin))]


async def test_the_mailbox_shows_each_email_as_a_mail_reader_does(
        system: System, smtp_port: int) -> None:
    emails = _emails_of_every_shape()
    for email in emails:
        await aiosmtplib.send(email, sender="x@example.com", recipients=["ada@example.com"],
                              hostname="127.0.0.1", port=smtp_port)
    letters = await mail_arrived(system, len(emails))

    expected = []
    for email in emails:  # as the stdlib's reader of today's email shows it
        reader = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(email))
        part = reader.get_body(preferencelist=("plain", "html"))
        assert part is not None
        expected.append((str(reader.get("From") or "x@example.com"), str(reader["Subject"]),
                         part.get_content().replace("\r\n", "\n").removesuffix("\n")))
    assert [(x["from"], x["subject"], x["body"]) for x in letters] == expected


async def test_the_mailbox_shows_one_letter_per_recipient_and_message_id(
        system: System, smtp_port: int) -> None:
    letter = ("Subject: Hi\r\nFrom: x@example.com\r\nMessage-ID: <one@example.com>\r\n"
              "\r\nHello\r\n")
    for _ in range(2):
        await aiosmtplib.send(letter, sender="x@example.com",
                              recipients=["ada@example.com", "bob@example.com"],
                              hostname="127.0.0.1", port=smtp_port)
    await aiosmtplib.send(letter.replace("<one@", "<two@"), sender="x@example.com",
                          recipients=["ada@example.com"], hostname="127.0.0.1",
                          port=smtp_port)

    assert [x["to"] for x in await mailbox(system)] == [
        "ada@example.com", "bob@example.com", "ada@example.com"]


async def test_an_email_recorded_before_a_restart_is_sent_after_it(
        tmp_path: Path, smtp_port: int, quick_retries: None) -> None:
    async with running([notifications], tmp_path) as system:  # no sink: nothing listens
        command = send_email()
        await deliver(system, command, settle=False)
        await eventually(lambda: sent_stats(system).retried >= 1)

    config.configure(smtp_sink=True)
    async with running([notifications], tmp_path) as system:
        await sent_and_answered(system)

        [reply] = replies(system)
        assert reply["metadata"]["type"] == "EmailSent"
        assert reply["metadata"]["causationId"] == command.metadata.id
        assert len(await mail_arrived(system, 1)) == 1

