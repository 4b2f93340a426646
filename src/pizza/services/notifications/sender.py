"""The sender: sends the emails SendEmail handlers recorded, then answers the commands.

The outbox pattern, applied to SMTP. A handler only writes the email to send (a row of
``outgoing_emails``, see outgoing.py) in its transaction; this background loop of the
service claims a batch of due rows, hands each to the SMTP server over one kept
connection with NO transaction open (no database lock is ever held across a network
call), and then, in one short transaction for the batch, marks each row sent or failed
and answers EmailSent / EmailFailed on its command's replyTo through the kernel's outbox
(a Context for each, whose cause is the command: ``ServiceHost.unit_of_work_for``).

The guarantee to the SMTP server is at-least-once, the only honest one: a process that
dies after the server accepted an email and before its batch was marked sends it again
when the row is due again (its claim runs out), with the same Message-ID
(``mailer.message_id_for`` of the command id), so mail software, and our own mailbox,
shows it once. The answer to the command is sent exactly once: it commits with the mark.

Failures:

* permanent (5xx, an unusable address or header): the row ends failed, EmailFailed;
* temporary for this email (4xx): the row is due again after its own backoff;
* the server unreachable (refused, timed out, dropped): this row and the rest of the
  batch go back unspent, the loop pauses (backoff up to ``SERVER_BACKOFF.maximum``), one
  log line when the outage starts and one when it ends. Nothing is lost or dead-lettered.

The requester must still get an answer when a temporary failure never clears up, so the
give-up rule is a deadline on the command's own age (its metadata.time): a temporary
failure later than PIZZA_EMAIL_GIVE_UP_SECONDS (default 15 minutes) after the command
was sent is answered EmailFailed instead of tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pizza.contracts.notifications import EmailFailedV1, EmailSentV1
from pizza.eventing import Backoff
from pizza.eventing.catalog import Reply
from pizza.eventing.context import Unpublishable
from pizza.eventing.envelope import Metadata
from pizza.eventing.host import ServiceHost
from pizza.eventing.outage import Outage, database_unavailable
from pizza.eventing.settings import number
from pizza.services.notifications import mailer, outgoing

log = logging.getLogger("pizza.services.notifications.sender")

PRUNE_EVERY = 60.0  # seconds between looks for old done rows
BATCH = 16  # rows claimed at once (sent one after another over one connection)
IDLE_SECONDS = 0.5  # with nothing due, look again after this (rows of other processes)
BACKOFF = Backoff(initial=2.0, factor=2.0, maximum=120.0)  # one email's 4xx
SERVER_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0)  # no server answers
DEFAULT_GIVE_UP = 900.0


def give_up_after() -> float:
    """Seconds after a command's time when a temporary failure ends it (read per call)."""
    return max(0.0, number("PIZZA_EMAIL_GIVE_UP_SECONDS", DEFAULT_GIVE_UP))


def _bounded(reason: str, limit: int = 1000) -> str:
    """A reason within EmailFailed's bound (an SMTP server's answer may be long)."""
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def _age(meta: Metadata) -> float:
    try:
        sent = datetime.fromisoformat(meta.time)
    except ValueError:
        return 0.0  # unreadable: measured from nothing, it never expires
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    return (datetime.now(UTC) - sent).total_seconds()


@dataclass(frozen=True)
class Answer:
    """An email that is done (``error``: failed for good, and why), and what to answer."""

    email: outgoing.OutgoingEmail
    reply: Reply
    error: str | None = None


class Unreachable:
    """No SMTP server answered: the batch stops."""


UNREACHABLE = Unreachable()


@dataclass
class SenderStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0  # temporary failures, each put back for later


class Sender:
    """One process's sender: its claims, its SMTP connection, its outage state."""

    def __init__(self, host: ServiceHost, connection: mailer.Connection) -> None:
        self.host = host
        self.db = host.db
        self.name = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.connection = connection
        self.wakeup = asyncio.Event()
        self.stats = SenderStats()
        self.smtp = Outage("the SMTP server", log)
        self.unreachable_in_a_row = 0
        self.pruned_at = time.monotonic()

    async def work(self) -> bool:
        """Send one batch of due emails; False (after a rest) when there was none."""
        if time.monotonic() - self.pruned_at > PRUNE_EVERY:
            self.pruned_at = time.monotonic()
            await outgoing.prune(self.db)
        try:
            emails = await outgoing.claim(self.db, self.name, BATCH) \
                if await outgoing.anything_due(self.db) else []
        except Exception as error:
            if database_unavailable(error) is None:
                raise
            self.db.outage.begin("email-sender", error)
            await self._rest(SERVER_BACKOFF.maximum / 10)
            return False
        self.db.outage.end("email-sender")
        if not emails:
            await self._rest(IDLE_SECONDS)
            return False
        answers: list[Answer] = []
        unreachable = False
        for done, email in enumerate(emails):
            outcome = await self._send(email)
            if outcome is UNREACHABLE:  # the rest goes back untried
                for untried in emails[done + 1:]:
                    await self._not_now(untried, "not tried: the batch stopped",
                                        spent=False)
                unreachable = True
                break
            if isinstance(outcome, Answer):
                answers.append(outcome)
        await self._answer(answers)
        if unreachable:
            self.unreachable_in_a_row += 1
            # Not woken by new emails meanwhile: they would find no server either.
            await asyncio.sleep(SERVER_BACKOFF.delay(self.unreachable_in_a_row))
            return False
        self.unreachable_in_a_row = 0
        return True

    async def _send(self, email: outgoing.OutgoingEmail) -> Answer | Unreachable | None:
        """Send one email: its answer when it is done (sent, or failed for good), None
        when it was put back for later, UNREACHABLE when no server answered."""
        try:
            command = email.as_command()
            await self.connection.deliver(command, mailer.compose(command, email.message_id))
        except mailer.PermanentFailure as failure:
            # The id, never the address or the body: logs carry no personal data.
            log.warning("email %s failed: %s", email.command.id, failure)
            return Answer(email, EmailFailedV1(reason=_bounded(str(failure))),
                          error=_bounded(str(failure)))
        except mailer.TemporaryFailure as failure:
            if isinstance(failure, mailer.Unreachable):
                self.smtp.begin("email-sender", failure)
            await self._not_now(email, str(failure), spent=True)
            return UNREACHABLE if isinstance(failure, mailer.Unreachable) else None
        self.smtp.end("email-sender")
        return Answer(email, EmailSentV1(message_id=email.message_id))

    async def _not_now(self, email: outgoing.OutgoingEmail, reason: str, *,
                       spent: bool) -> None:
        """A temporary failure (``spent``) or no try at all: later, or EmailFailed once
        the command is older than its deadline."""
        age = _age(email.command)
        if age >= give_up_after():
            log.warning("email %s: giving up after %.0fs: %s", email.command.id, age,
                        reason)
            failure = _bounded(f"gave up after {age:.0f}s: {reason}")
            await self._answer([Answer(email, EmailFailedV1(reason=failure), error=failure)])
            return
        if spent:
            self.stats.retried += 1
        delay = BACKOFF.delay(email.attempts + 1) if spent else \
            SERVER_BACKOFF.delay(self.unreachable_in_a_row + 1)
        await outgoing.later(self.db, email, delay, error=_bounded(reason), spent=spent)

    async def _answer(self, answers: list[Answer]) -> None:
        """Mark the rows done and answer their commands, in one transaction (the outbox):
        one commit for the batch the server took, not one per email.

        If that fails (the database went away, the process is failing), the rows are
        given back, due now, so they are sent again, with the same Message-ID:
        at-least-once. So is a batch whose process dies before this commit.
        """
        if not answers:
            return
        try:
            async with self.host.unit_of_work_for(
                    [answer.email.command for answer in answers]) as contexts:
                for ctx, answer in zip(contexts, answers, strict=True):
                    if not await outgoing.finish(ctx.db, answer.email, error=answer.error):
                        continue  # another sender finished it after our claim ran out
                    try:
                        ctx.reply(answer.reply)
                    except Unpublishable as refusal:  # not answerable: done, said once
                        log.error("email %s: its answer cannot be published: %s",
                                  answer.email.command.id, refusal)
        except Exception:
            log.exception("%d email(s) were handed to the SMTP server but could not be "
                          "marked; they will be sent again (same Message-ID)", len(answers))
            for answer in answers:
                try:
                    await outgoing.later(self.db, answer.email, 0.0, error=None, spent=False)
                except Exception:  # its claim runs out instead (outgoing.CLAIM_SECONDS)
                    pass
            return
        for answer in answers:
            if answer.error is None:
                self.stats.sent += 1
            else:
                self.stats.failed += 1

    async def _rest(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a newly recorded email ends the rest at once."""
        try:
            async with asyncio.timeout(seconds):
                await self.wakeup.wait()
        except TimeoutError:
            pass
        self.wakeup.clear()

    async def stop(self) -> None:
        await self.connection.close()
        self.smtp.forget("email-sender")
        self.db.outage.forget("email-sender")
        try:
            await outgoing.release(self.db, self.name)
        except Exception:  # the database is away: the claims run out by themselves
            log.warning("could not release the email claims of %s", self.name)


class EmailSender:
    """The sender of one notifications service, to the SMTP server at smtp_host:smtp_port:
    its factory adds ``start``/``stop`` to the service's start and stop and runs
    ``send_due`` in a loop; a recorded email ``wake``s it."""

    def __init__(self, smtp_host: str, smtp_port: int) -> None:
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.sender: Sender | None = None

    def current(self) -> Sender | None:
        """This service's running sender, if any."""
        return self.sender

    def wake(self) -> None:
        """A new email was recorded: send it now rather than at the next look."""
        if self.sender is not None:
            self.sender.wakeup.set()

    async def start(self, host: ServiceHost) -> None:
        """on_start: one SQLite file has one process, so any claim in it is a dead one's."""
        if host.db.is_sqlite:
            await outgoing.release(host.db)
        self.sender = Sender(host, mailer.Connection(self.smtp_host, self.smtp_port))

    async def stop(self, _host: ServiceHost) -> None:
        sender, self.sender = self.sender, None
        if sender is not None:
            await sender.stop()

    async def send_due(self) -> bool:
        if self.sender is None:  # not started yet, or stopping
            await asyncio.sleep(IDLE_SECONDS)
            return False
        return await self.sender.work()
