"""The SMTP sink of ``pizza up``: a real SMTP server that keeps what it receives.

It stands in for the outside mail system on one machine: notifications sends real SMTP
to it, and ``GET /api/mailbox`` shows what arrived. Mail is kept in this service's own
``mailbox`` table (one row per recipient), so it survives restarts, on SQLite and
PostgreSQL alike.

aiosmtpd's SMTP protocol is served on the service's own event loop, not in the thread
aiosmtpd's Controller starts: there each email was handed from one loop to the other
and back (``run_coroutine_threadsafe``), and the sink could outlive the loop that
stores its mail. A received email is stored through the service's database engine,
and only once it is stored does the sink answer 250: an email the sink accepted is
never lost, even if the process dies right after. (It can wait: the sender holds no
transaction while it sends, see sender.py.)

A mailbox shows one letter per recipient and Message-ID, as mail clients do: the sender
sends at least once, and an email sent again after a crash carries the same Message-ID,
so the ``mailbox_received`` table recognises it and it is not stored twice.

Recipients in the reserved ``.invalid`` top-level domain (RFC 2606) are refused with a
permanent 550, so the EmailFailed path can be seen without a real mail server.

Started with ``start_sink(service, host, port)``: by the service's on_start hook when its
settings ask for a sink (PIZZA_SMTP_SINK=1, or ``pizza up``: ``Sink`` below, on
smtp_host:smtp_port), stopped by its on_stop hook.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pizza.eventing.storage import Database, once_per_dialect, upsert
from pizza.services.notifications.tables import mailbox, mailbox_received

if TYPE_CHECKING:
    from pizza.eventing import Service
    from pizza.eventing.host import ServiceHost

log = logging.getLogger("pizza.services.notifications.mailbox")


@dataclass(frozen=True)
class Letter:
    """One received email, as one recipient's mailbox holds it."""

    to: str
    sender: str
    subject: str
    body: str
    received_at: datetime
    message_id: str | None = None
    id: int | None = None  # the mailbox row: a page's cursor


def _letters(envelope: Envelope) -> list[Letter]:
    raw = envelope.original_content or envelope.content or b""
    data = raw if isinstance(raw, bytes) else raw.encode()
    # compat32 (the parser's default) keeps each header as it came; only the three shown
    # are decoded (_header). policy.default parsed every header it was asked for through
    # its header registry: 580 against 50 CPU-us an email, a fifth of the process.
    message = BytesParser().parsebytes(data)
    headers: dict[str, str] = {}
    for name, value in message.raw_items():
        headers.setdefault(name.lower(), value)
    part = _body_part(message)
    try:
        body = _decoded(part) if part is not None else str(message.get_payload())
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        body = data.decode("utf-8", "replace")
    now = datetime.now(UTC)
    return [Letter(to=recipient, sender=_header(headers, "from") or envelope.mail_from or "",
                   subject=_header(headers, "subject"), body=_text(body), received_at=now,
                   message_id=_message_id(_header(headers, "message-id")))
            for recipient in envelope.rcpt_tos]


_FOLDED = re.compile(r"\r?\n(?=[ \t])")


def _header(headers: dict[str, str], name: str) -> str:
    """A header as a reader shows it: unfolded, RFC 2047 words decoded. A display name
    is shown as decoded, without the quotes a reader would add around one with a comma.
    One holding raw UTF-8 (RFC 6532, rare) is read by the reader itself."""
    value = headers.get(name)
    if value is None:
        return ""
    if not value.isascii():  # raw bytes of 8-bit text, as the parser escapes them
        return str(policy.default.header_fetch_parse(name, value))
    text = _FOLDED.sub("", value).lstrip()
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, HeaderParseError):  # an unknown charset, a broken word
        return text


def _body_part(message: Message) -> Message | None:
    """The part a reader shows: the first plain text that is not an attachment, else the
    first HTML (as EmailMessage.get_body with plain preferred)."""
    html = None
    for part in message.walk():
        if part.get_content_maintype() != "text" or \
                str(part.get("Content-Disposition", "")).lower().startswith("attachment"):
            continue
        if part.get_content_subtype() == "plain":
            return part
        if html is None and part.get_content_subtype() == "html":
            html = part
    return html


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return data.decode(part.get_content_charset() or "us-ascii", "replace")


def _message_id(header: str) -> str | None:
    """The Message-ID as a key of at most 255 characters (a longer one is hashed)."""
    text = header.strip()
    if not text:
        return None
    return text if len(text) <= 255 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _text(body: str) -> str:
    """As it was written: SMTP's CRLF line ends back to newlines, without the final
    newline the email library adds to every body."""
    return body.replace("\r\n", "\n").removesuffix("\n")


async def store(db: Database, letters: list[Letter]) -> None:
    """Keep received letters in the service's database (runs on the service's loop), each
    recipient's once per Message-ID."""
    async with db.begin() as conn:
        new = [x for x in letters if await _first_time(conn, x)]
        if new:
            await conn.execute(insert(mailbox), [
                {"to": x.to, "from": x.sender, "subject": x.subject, "body": x.body,
                 "received_at": x.received_at} for x in new])


async def _first_time(conn: AsyncConnection, letter: Letter) -> bool:
    """True unless this recipient already has a letter with this Message-ID."""
    if letter.message_id is None:
        return True  # nothing to know it by
    seen = await conn.scalar(_FIRST_TIME(conn), {
        "message_id": letter.message_id, "recipient": letter.to.strip().lower()[:320]})
    return seen is not None


_FIRST_TIME = once_per_dialect(lambda conn: upsert(conn, mailbox_received)
                               .on_conflict_do_nothing()
                               .returning(mailbox_received.c.message_id))


async def letters_for(db: Database, to: str | None, *, search: str | None = None,
                      latest: bool = False, before: int | None = None, after: int | None = None,
                      limit: int | None = None) -> list[Letter]:
    """What arrived, oldest first (``latest``: latest first); only one address's mail
    when ``to`` is given, only mail whose address or subject contains ``search`` (any
    case) when that is; only rows before or after a row id; at most ``limit``."""
    query = select(mailbox)
    if to is not None:
        query = query.where(func.lower(mailbox.c.to) == to.strip().lower())
    if search:
        query = query.where(or_(mailbox.c.to.icontains(search, autoescape=True),
                                mailbox.c.subject.icontains(search, autoescape=True)))
    if before is not None:
        query = query.where(mailbox.c.id < before)
    if after is not None:
        query = query.where(mailbox.c.id > after)
    query = query.order_by(mailbox.c.id.desc() if latest else mailbox.c.id)
    if limit is not None:
        query = query.limit(limit)
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [Letter(to=r["to"], sender=r["from"], subject=r["subject"], body=r["body"],
                   received_at=r["received_at"], id=r["id"]) for r in rows]


class _SinkHandler:
    """aiosmtpd's handler, on the service's loop."""

    def __init__(self, service: Service) -> None:
        self.service = service  # where letters are kept, while it runs
        self.storing: set[asyncio.Task[None]] = set()
        self.in_turn = asyncio.Lock()  # fair: stored in the order they were accepted

    async def handle_RCPT(self, _server: SMTP, _session: Session, envelope: Envelope,
                          address: str, _options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower().rstrip(".>")
        if domain == "invalid" or domain.endswith(".invalid"):
            return f"550 5.1.1 <{address}>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        host = self.service.host
        if host is None:  # nowhere to keep it yet: the sender will try again
            return "451 4.3.0 mailbox not ready, try again later"
        # A task of its own: a client that hangs up meanwhile does not cut the store short,
        # and stopping waits for it.
        storing = asyncio.create_task(self._store_in_turn(host.db, _letters(envelope)))
        self.storing.add(storing)
        storing.add_done_callback(self._stored)
        try:  # stored before it is accepted: a 250 is a letter in the mailbox
            await asyncio.shield(storing)
        except Exception:
            return "451 4.3.0 the mailbox could not store it, try again later"
        return "250 Message accepted for delivery"

    async def _store_in_turn(self, db: Database, letters: list[Letter]) -> None:
        async with self.in_turn:
            await store(db, letters)

    def _stored(self, task: asyncio.Task[None]) -> None:
        self.storing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the SMTP sink could not store an email: %r", task.exception())


class _Session(SMTP):
    """One client's SMTP session, known to its sink while the client is connected."""

    def __init__(self, handler: _SinkHandler, sessions: set[_Session]) -> None:
        super().__init__(handler, hostname="smtp-sink.plant-based.pizza",
                         loop=asyncio.get_running_loop())
        self.sessions = sessions
        sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)


class MailSink:
    """A running sink: aiosmtpd's SMTP protocol served on host:port."""

    def __init__(self, service: Service, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.handler = _SinkHandler(service)
        self.sessions: set[_Session] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _Session(self.handler, self.sessions), host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, hang up on every client, and return once every email
        accepted meanwhile is stored."""
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()  # its connection_lost ends the session
        if self.handler.storing:
            await asyncio.gather(*self.handler.storing, return_exceptions=True)


async def start_sink(service: Service, host: str, port: int) -> MailSink:
    """Start an SMTP sink on host:port keeping its mail in ``service``'s database. Call it
    on the loop the service runs on; ``stop()`` it before the service stops."""
    sink = MailSink(service, host, port)
    await sink.start()
    log.info("SMTP sink listening on %s:%d", host, port)
    return sink


class Sink:
    """The sink of one notifications service, if its settings want one: on_start starts
    it on host:port, on_stop stops it (it stores through the service, so it cannot
    outlive it)."""

    def __init__(self, service: Service, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.running: MailSink | None = None

    async def start(self, _host: ServiceHost) -> None:
        await self.stop(_host)
        self.running = await start_sink(self.service, self.host, self.port)

    async def stop(self, _host: ServiceHost) -> None:
        """Stop the sink, after the emails it accepted are stored."""
        sink, self.running = self.running, None
        if sink is not None:
            await sink.stop()


__all__ = ["Letter", "MailSink", "Sink", "letters_for", "start_sink"]
