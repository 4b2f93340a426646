"""SendEmail: deliver it over SMTP and answer EmailSent or EmailFailed on replyTo.

Temporary failures are retried by the kernel, with backoff. The requester must still get
an answer when they never clear up, but a handler cannot see which attempt it is in. So
the give-up rule is a deadline on the command's own age (its metadata.time): a temporary
failure later than PIZZA_EMAIL_GIVE_UP_SECONDS (default 15 minutes) after the command was
sent is answered EmailFailed instead of retried. The retry schedule below reaches further
than any allowed deadline, so the answer always comes before the attempts run out and
nothing is dead-lettered for a merely unreachable server. The price: a command that first
reaches us after its deadline (notifications was down that long) gets one try only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pizza.contracts.notifications import EmailFailedV1, EmailSentV1, SendEmailV1
from pizza.eventing import Backoff, Context
from pizza.eventing.envelope import Metadata
from pizza.eventing.settings import number
from pizza.services.notifications import mailer, sent_log, service

log = logging.getLogger("pizza.services.notifications")

MAX_ATTEMPTS = 16
BACKOFF = Backoff(initial=2.0, factor=2.0, maximum=120.0)
# How long after the first attempt the last one comes, at the least (about 20 minutes).
RETRY_REACH = sum(BACKOFF.delay(attempt) for attempt in range(1, MAX_ATTEMPTS))
CLOCK_SLACK = 120.0  # the sender's clock may run ahead of ours
DEFAULT_GIVE_UP = 900.0


def give_up_after() -> float:
    """Seconds after a command's time when a temporary failure ends it (read per call)."""
    wanted = number("PIZZA_EMAIL_GIVE_UP_SECONDS", DEFAULT_GIVE_UP)
    return max(0.0, min(wanted, RETRY_REACH - CLOCK_SLACK))


def _bounded(reason: str, limit: int = 1000) -> str:
    """A reason within EmailFailed's bound (an SMTP server's answer may be long)."""
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def _age(meta: Metadata) -> float:
    try:
        sent = datetime.fromisoformat(meta.time)
    except ValueError:
        return 0.0  # unreadable: never give up early; the kernel's attempts still end it
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    return (datetime.now(UTC) - sent).total_seconds()


@service.handles(SendEmailV1, max_in_flight=8, max_attempts=MAX_ATTEMPTS, backoff=BACKOFF)
async def send_email(command: SendEmailV1, ctx: Context) -> None:
    meta = ctx.cause
    assert meta is not None  # a handler always has the message it handles
    if await sent_log.was_sent(ctx.db, meta.id):
        return  # sent and answered before: nothing more to do
    message_id = mailer.message_id_for(meta.id)
    try:
        if meta.id not in sent_log.sent_here:
            await mailer.deliver(command, mailer.compose(command, message_id))
            sent_log.sent_here.add(meta.id)
    except mailer.PermanentFailure as failure:
        log.warning("email %s to %s failed: %s", meta.id, command.to, failure)
        ctx.reply(EmailFailedV1(reason=_bounded(str(failure))))
        return
    except mailer.TemporaryFailure as failure:
        age, deadline = _age(meta), give_up_after()
        if age < deadline:
            raise  # the kernel tries again later
        log.warning("email %s to %s: giving up after %.0fs: %s", meta.id, command.to, age,
                    failure)
        ctx.reply(EmailFailedV1(reason=_bounded(f"gave up after {age:.0f}s: {failure}")))
        return
    await sent_log.record(ctx.db, meta.id, command.to, command.subject, message_id)
    ctx.reply(EmailSentV1(message_id=message_id))
