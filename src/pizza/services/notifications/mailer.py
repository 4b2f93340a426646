"""Handing an email to the SMTP server, and telling a lasting refusal from a passing one.

A 5xx answer (recipient unknown, message refused) is permanent: sending again gives the
same answer. A 4xx answer (greylisting, mailbox busy), a refused connection or a timeout
is temporary: the same email may well go through later.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from pizza.config import settings
from pizza.contracts.notifications import SendEmailV1

SMTP_TIMEOUT = 10.0  # seconds, for the connection and each SMTP exchange


class PermanentFailure(Exception):
    """The email can never be sent as it is."""


class TemporaryFailure(Exception):
    """The email could not be sent now; it may be later."""


def message_id_for(command_id: str) -> str:
    """The Message-ID of the email a command asks for, made from the command's id.

    Deterministic, so if a crash makes us send one command's email twice, both copies
    carry the same Message-ID and mail software can tell they are one email.
    """
    domain = parseaddr(settings().mail_from)[1].rpartition("@")[2] or "plant-based.pizza"
    return f"<{command_id}@{domain}>"


def compose(command: SendEmailV1, message_id: str) -> EmailMessage:
    """The email as it goes on the wire; PermanentFailure if its fields cannot be one."""
    try:
        message = EmailMessage()
        message["From"] = command.sender
        message["To"] = command.to
        message["Subject"] = command.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id
        message.set_content(command.body)
    except (ValueError, TypeError) as error:  # e.g. a line break inside a header
        raise PermanentFailure(f"not a valid email: {error}") from None
    return message


def _address(raw: str, role: str) -> str:
    address = parseaddr(raw)[1]
    if "@" not in address:
        raise PermanentFailure(f"{role} {raw!r} is not an email address")
    return address


async def deliver(command: SendEmailV1, message: EmailMessage) -> None:
    """Send one email to settings().smtp_host:smtp_port, or raise one of our failures."""
    sender = _address(command.sender, "sender")
    recipient = _address(command.to, "recipient")
    config = settings()
    try:
        await aiosmtplib.send(message, sender=sender, recipients=[recipient],
                              hostname=config.smtp_host, port=config.smtp_port,
                              timeout=SMTP_TIMEOUT)
    except aiosmtplib.SMTPRecipientsRefused as refused:
        codes = [r.code for r in refused.recipients]
        reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refused.recipients)
        failure = PermanentFailure if all(500 <= c < 600 for c in codes) else TemporaryFailure
        raise failure(f"recipient refused: {reason}") from None
    except aiosmtplib.SMTPResponseException as error:
        failure = PermanentFailure if 500 <= error.code < 600 else TemporaryFailure
        raise failure(f"SMTP server answered {error.code} {error.message}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise TemporaryFailure(f"SMTP server unreachable: {error!r}") from None
