"""Handing an email to the SMTP server, and telling a lasting refusal from a passing one.

A 5xx answer (recipient unknown, message refused) is permanent: sending again gives the
same answer. A failure's text never quotes the address or the body (servers often echo
the address): it travels in EmailFailed, the logs and the database, which must hold no
personal data beyond what forgetting a customer erases. A 4xx answer (greylisting,
mailbox busy), a refused connection or a timeout is temporary: the same email may well
go through later.

``Connection`` keeps one SMTP connection open across emails (the sender hands it one
email after another), and opens a new one when the server has dropped it.

``compose`` writes the email's bytes from a template rather than through the ``email``
package's ``EmailMessage``, whose header registry parses every header it is given (18%
of the notifications process under load, 1.5 ms an email): the headers are fixed and
few, and each field is checked and encoded here (no line break anywhere, RFC 2047 for
non-ASCII text, RFC 6532 UTF-8 for a non-ASCII address).
"""

from __future__ import annotations

import base64
import re
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

import aiosmtplib

from pizza.contracts.notifications import SendEmailV1

SMTP_TIMEOUT = 10.0  # seconds, for the connection and each SMTP exchange


class PermanentFailure(Exception):
    """The email can never be sent as it is."""


class TemporaryFailure(Exception):
    """The email could not be sent now; it may be later."""


class Unreachable(TemporaryFailure):
    """No SMTP server answers now: no email can go until it does (not this one's fault)."""


def message_id_for(command_id: str, mail_from: str) -> str:
    """The Message-ID of the email a command asks for, made from the command's id.

    Deterministic, so if a crash makes us send one command's email twice, both copies
    carry the same Message-ID and mail software can tell they are one email. Its domain
    is the one we send from (``mail_from``).
    """
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "plant-based.pizza"
    return f"<{command_id}@{domain}>"


# What ends a line for str.splitlines (the email package refuses each in a header), and
# NUL: any of them in a field would let it write a header of its own (injection).
_LINE_BREAK = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_BODY_LINES = re.compile("\r\n|\r|\n")
_LONGEST_LINE = 998  # RFC 5322, without the CRLF


def compose(command: SendEmailV1, message_id: str) -> bytes:
    """The email as it goes on the wire (RFC 5322, CRLF line ends); PermanentFailure if
    its fields cannot be one (a line break in a header field)."""
    for name, value in (("From", command.sender), ("To", command.to),
                        ("Subject", command.subject), ("Message-ID", message_id)):
        if _LINE_BREAK.search(value):
            raise PermanentFailure(f"not a valid email: the {name} header would hold a "
                                   "line break")
    lines = _BODY_LINES.split(command.body)
    if command.body.isascii() and all(len(line) <= _LONGEST_LINE for line in lines):
        encoding, body = "7bit", "\r\n".join(lines) + "\r\n"
    else:  # UTF-8 in base64 lines: fits any server, 8BITMIME or not
        encoding = "base64"
        body = base64.encodebytes(("\r\n".join(lines) + "\r\n").encode()) \
            .decode("ascii").replace("\n", "\r\n")
    head = (f"From: {_mailbox(command.sender)}\r\n"
            f"To: {_mailbox(command.to)}\r\n"
            f"Subject: {_text(command.subject, 'Subject')}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Message-ID: {message_id}\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n")
    return (head + body).encode()


def _text(value: str, name: str) -> str:
    """An unstructured header's value: as it is if plain ASCII, else RFC 2047 words
    (also when it holds "=?", which a reader would take for the start of one)."""
    if value.isascii() and "=?" not in value:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _mailbox(raw: str) -> str:
    """An address header's value: the address, with its display name if it has one
    (quoted as needed, RFC 2047 if not ASCII); a non-ASCII address as UTF-8 (RFC 6532,
    sent with SMTPUTF8). Only the first address: the envelope names one recipient."""
    name, address = parseaddr(raw)
    address = address or raw
    if not name:
        return address
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    return f"{_text(name, 'To')} <{address}>"


def _without(text: str, *personal: str) -> str:
    """``text`` with every personal value (an address, a body) blanked out."""
    for value in personal:
        for form in {value, value.strip(), parseaddr(value)[1]}:
            if len(form) >= 3:
                text = text.replace(form, "<recipient>")
    return text


def _address(raw: str, role: str) -> str:
    address = parseaddr(raw)[1]
    if "@" not in address:
        raise PermanentFailure(f"the {role} is not an email address")
    return address


def check_addresses(command: SendEmailV1) -> None:
    """PermanentFailure unless the sender and the recipient are email addresses."""
    _address(command.sender, "sender")
    _address(command.to, "recipient")


class Connection:
    """One connection to the SMTP server at host:port, reused for email after email."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._smtp: aiosmtplib.SMTP | None = None

    async def deliver(self, command: SendEmailV1, message: bytes) -> None:
        """Send one email, or raise PermanentFailure, TemporaryFailure or Unreachable."""
        sender = _address(command.sender, "sender")
        recipient = _address(command.to, "recipient")
        reused = self._smtp is not None and self._smtp.is_connected
        try:
            try:
                await self._send(message, sender, recipient)
            except Unreachable:
                if not reused:
                    raise
                # The kept connection had been dropped (the server's idle timeout): the
                # email did not go; once more on a new connection.
                await self._send(message, sender, recipient)
        except (PermanentFailure, TemporaryFailure) as failure:
            raise type(failure)(_without(str(failure), command.to, recipient)) from None

    async def _send(self, message: bytes, sender: str, recipient: str) -> None:
        try:
            smtp = await self._connected()
            utf8 = not (sender.isascii() and recipient.isascii())
            await smtp.sendmail(sender, [recipient], message,
                                mail_options=["SMTPUTF8"] if utf8 else None)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [r.code for r in refused.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in refused.recipients)
            failure = PermanentFailure if all(500 <= c < 600 for c in codes) else \
                TemporaryFailure
            raise failure(f"recipient refused: {reason}") from None
        except aiosmtplib.SMTPServerDisconnected as error:
            await self.close()
            raise Unreachable(f"SMTP server unreachable: {error!r}") from None
        except aiosmtplib.SMTPResponseException as error:
            if error.code == 421:  # the server is closing the connection
                await self.close()
                raise Unreachable(f"SMTP server answered {error.code} {error.message}") \
                    from None
            failure = PermanentFailure if 500 <= error.code < 600 else TemporaryFailure
            raise failure(f"SMTP server answered {error.code} {error.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            await self.close()
            raise Unreachable(f"SMTP server unreachable: {error!r}") from None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=SMTP_TIMEOUT)
        await smtp.connect()
        self._smtp = smtp
        return smtp

    async def close(self) -> None:
        """Say QUIT if the server still listens, and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit(timeout=2.0)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()
