"""``pizza deadletters``: what a queue gave up on, why, and sending it back once fixed.

    pizza deadletters list [--service kitchen]
    pizza deadletters show ID                      everything about one dead letter
    pizza deadletters drop ID                      delete it
    pizza deadletters retry [ID] [--service S]     back to the consumer that failed, only

ID is the dead letter's number in the list (its sequence in the dead-letter stream) or the
message id (``metadata.id``), which names every dead letter of that message.

A dead letter keeps the original bytes and says why in its headers (reason, error,
attempts, original subject, consumer). Retrying publishes those bytes unchanged to
``retry_subject(original subject, consumer)``, which only the consumer that failed reads,
so no other consumer sees the message again; the message id is kept, so the consumer's
inbox still knows it. The dead letter is deleted only once the broker acknowledged the
retry: a retry interrupted half-way leaves it to retry again, and the broker drops the
second copy (same ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from pizza.cli_common import broker, fail, recorded_broker
from pizza.eventing.catalog import DEAD_LETTERS_PREFIX
from pizza.eventing.transport.base import (
    DEAD_ATTEMPTS,
    DEAD_CONSUMER,
    DEAD_ERROR,
    DEAD_REASON,
    DEAD_SUBJECT,
    retry_subject,
)

deadletters = typer.Typer(help="Messages the queues gave up on.", no_args_is_help=True,
                          add_completion=False)
console = Console(highlight=False)  # Rich's highlighter is quadratic in a long line
STREAM = "PIZZA_DEADLETTERS"
SHOW_BYTES = 64_000  # of a payload; the rest is counted, not printed
BATCH = 256
UNPUBLISHABLE = "unpublishable"  # the reason of an outbox row the broker refused for good
TRUNCATED = "Pizza-Truncated-From"

ServiceOption = Annotated[str | None, typer.Option(
    "--service", help="Only this service's dead letters.")]


@dataclass(frozen=True)
class DeadLetter:
    seq: int  # in the dead-letter stream: the number the list shows
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def consumer(self) -> str:
        return self.headers.get(DEAD_CONSUMER, "")

    @property
    def original_subject(self) -> str:
        return self.headers.get(DEAD_SUBJECT, "")

    @property
    def metadata(self) -> dict[str, Any]:
        try:
            document = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return {}
        meta = document.get("metadata") if isinstance(document, dict) else None
        return meta if isinstance(meta, dict) else {}

    @property
    def message_id(self) -> str:
        return str(self.metadata.get("id") or "")

    @property
    def kind(self) -> str:
        meta = self.metadata
        if not meta.get("type"):
            return "(unreadable)"
        return f"{meta['type']} v{meta.get('version', '?')}"

    @property
    def unretryable(self) -> str | None:
        """Why this dead letter cannot be retried, if it cannot."""
        if self.headers.get(DEAD_REASON) == UNPUBLISHABLE:
            return "the broker never took it from its producer's outbox"
        if TRUNCATED in self.headers:
            return "only the start of its payload was kept"
        if not self.consumer or not self.original_subject:
            return "it does not say which consumer failed it"
        return None

    def retry_subject(self) -> str:
        """The failed consumer's own retry subject (a retried letter's subject is one)."""
        subject = self.original_subject
        if subject.endswith(retry_subject("", self.consumer)):
            return subject
        return retry_subject(subject, self.consumer)

    def retry_id(self) -> str:
        """Unique per dead letter, so each retry is stored once and a repeat is dropped."""
        return f"{self.message_id or 'unreadable'}.retry.{self.consumer}.{self.seq}"


def _subject(service: str | None) -> str:
    return f"{DEAD_LETTERS_PREFIX}.{service}.>" if service else f"{DEAD_LETTERS_PREFIX}.>"


async def _read(js: JetStreamContext, service: str | None) -> list[DeadLetter]:
    """Every dead letter (of one service), oldest first, read without consuming them."""
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                            inactive_threshold=30.0)
    try:
        subscription = await js.pull_subscribe(_subject(service), stream=STREAM,
                                               config=config)
    except NotFoundError:
        return []  # no dead-letter stream yet: nothing ever died
    letters: list[DeadLetter] = []
    try:
        total = (await subscription.consumer_info()).num_pending or 0
        while len(letters) < total:
            try:
                batch = await subscription.fetch(min(BATCH, total - len(letters)),
                                                 timeout=2.0)
            except NatsTimeout:
                break
            letters.extend(DeadLetter(m.metadata.sequence.stream, m.subject,
                                      dict(m.headers or {}), m.data) for m in batch)
    finally:
        with contextlib.suppress(Exception):  # the ephemeral consumer expires anyway
            await subscription.unsubscribe()
    return letters


def _select(letters: list[DeadLetter], ident: str | None) -> list[DeadLetter]:
    if ident is None:
        return letters
    if ident.isdecimal():
        chosen = [letter for letter in letters if letter.seq == int(ident)]
    else:
        chosen = [letter for letter in letters if letter.message_id == ident]
    if not chosen:
        fail(f"no dead letter {ident}: see `pizza deadletters list`")
    return chosen


def _run(work: Any) -> Any:
    async def session() -> Any:
        async with broker(recorded_broker(), "pizza-deadletters") as nc:
            return await work(nc.jetstream())

    return asyncio.run(session())


IdArgument = Annotated[str, typer.Argument(
    help="The dead letter's number in the list, or the message id.")]


@deadletters.command("list")
def list_letters(service: ServiceOption = None) -> None:
    """Show the dead letters with their reasons."""
    letters: list[DeadLetter] = _run(lambda js: _read(js, service))
    if not letters:
        console.print("No dead letters.")
        return
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("#", "consumer", "message", "id", "reason", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        headers = letter.headers
        table.add_row(str(letter.seq), escape((letter.consumer or "?")[:120]),
                      escape(letter.kind[:120]), escape((letter.message_id or "-")[:80]),
                      escape(headers.get(DEAD_REASON, "?")[:80]),
                      escape(headers.get(DEAD_ATTEMPTS, "?")),
                      escape(headers.get(DEAD_ERROR, "")[:300]))
    console.print(table)


@deadletters.command()
def show(ident: IdArgument) -> None:
    """Everything about one dead letter: why, where from, its headers and its payload."""
    chosen = _select(_run(lambda js: _read(js, None)), ident)
    for letter in chosen:
        console.rule(f"dead letter {letter.seq}")
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column(overflow="fold")
        for label, value in (
                ("message", letter.kind), ("id", letter.message_id or "-"),
                ("consumer", letter.consumer or "?"),
                ("original subject", letter.original_subject or "?"),
                ("reason", letter.headers.get(DEAD_REASON, "?")),
                ("attempts", letter.headers.get(DEAD_ATTEMPTS, "?")),
                ("error", letter.headers.get(DEAD_ERROR, "")),
                ("stored on", letter.subject)):
            facts.add_row(label, escape(value[:4000]))
        console.print(facts)
        console.print("[bold]headers[/]")
        for name, value in sorted(letter.headers.items()):
            console.print(f"  {escape(name)}: {escape(value[:1000])}", soft_wrap=True)
        console.print(f"[bold]payload[/] ({len(letter.data)} bytes)")
        console.print(escape(_pretty(letter.data)), soft_wrap=True)


def _pretty(data: bytes) -> str:
    """Indented JSON (or the raw text), cut at SHOW_BYTES with a note of what is left."""
    try:
        text = orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", errors="replace")
    if len(text) <= SHOW_BYTES:
        return text
    return f"{text[:SHOW_BYTES]}\n... ({len(text) - SHOW_BYTES} more characters not shown)"


@deadletters.command()
def drop(ident: IdArgument) -> None:
    """Delete a dead letter for good (its message is not retried)."""

    async def work(js: JetStreamContext) -> int:
        chosen = _select(await _read(js, None), ident)
        for letter in chosen:
            await js.delete_msg(STREAM, letter.seq)
        return len(chosen)

    console.print(f"{_run(work)} dead letter(s) dropped.")


@deadletters.command()
def retry(
    ident: Annotated[str | None, typer.Argument(
        help="One dead letter (number or message id); all when omitted.")] = None,
    service: ServiceOption = None,
) -> None:
    """Send dead letters back to the consumer that failed them, and only to it."""

    async def work(js: JetStreamContext) -> tuple[int, list[DeadLetter]]:
        chosen = _select(await _read(js, service), ident)
        kept = [letter for letter in chosen if letter.unretryable]
        if ident is not None and kept:
            fail(f"dead letter {kept[0].seq} cannot be retried: {kept[0].unretryable}")
        sent = 0
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("retrying", total=len(chosen) - len(kept))
            for letter in chosen:
                if letter.unretryable:
                    continue
                await _retry(js, letter, sent)
                sent += 1
                bar.advance(task)
        return sent, kept

    sent, kept = _run(work)
    console.print(f"{sent} dead letter(s) sent back to the consumer that failed them.")
    if kept:
        console.print(f"{len(kept)} not retried (numbers "
                      f"{', '.join(str(letter.seq) for letter in kept[:20])}): "
                      f"{kept[0].unretryable}; `pizza deadletters show` and `drop` them.")


async def _retry(js: JetStreamContext, letter: DeadLetter, sent: int) -> None:
    headers = {"Nats-Msg-Id": letter.retry_id()}
    if "traceparent" in letter.headers:
        headers["traceparent"] = letter.headers["traceparent"]
    try:
        await js.publish(letter.retry_subject(), letter.data, headers=headers, timeout=5.0)
    except Exception as error:
        fail(f"dead letter {letter.seq} not retried, the broker did not take it ({error!r}); "
             f"{sent} sent back before it")
    await js.delete_msg(STREAM, letter.seq)  # only once the retry is acknowledged
