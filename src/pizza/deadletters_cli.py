"""``pizza deadletters``: what a queue gave up on, why, and sending it back once fixed.

    pizza deadletters list [--service kitchen]
    pizza deadletters retry [--service kitchen]   back to the subject it came from

A dead letter keeps the original bytes and says why in its headers (reason, error,
attempts, original subject, consumer). Retrying republishes the original message: the
consumer that failed has no inbox row for it and handles it; every other consumer of
that subject already has one and ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import nats
import orjson
import typer
from rich.console import Console
from rich.table import Table

from pizza.eventing.catalog import DEAD_LETTERS_PREFIX
from pizza.eventing.settings import broker_url
from pizza.eventing.transport.base import (
    DEAD_ATTEMPTS,
    DEAD_CONSUMER,
    DEAD_ERROR,
    DEAD_REASON,
    DEAD_SUBJECT,
)

deadletters = typer.Typer(help="Messages the queues gave up on.", no_args_is_help=True,
                          add_completion=False)
console = Console()
STREAM = "PIZZA_DEADLETTERS"

ServiceOption = Annotated[str | None, typer.Option(
    "--service", help="Only this service's dead letters.")]


async def _read(url: str, service: str | None, settle: bool) -> list[Any]:
    """Every dead letter (of one service); with ``settle`` they are taken off the stream."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    subject = f"{DEAD_LETTERS_PREFIX}.{service}.>" if service else f"{DEAD_LETTERS_PREFIX}.>"
    letters: list[Any] = []
    try:
        subscription = await js.pull_subscribe(subject, stream=STREAM)
        while True:
            try:
                batch = await subscription.fetch(256, timeout=0.5)
            except nats.errors.TimeoutError:
                break
            letters.extend(batch)
        if settle:
            for letter in letters:
                await js.publish(
                    letter.headers[DEAD_SUBJECT], letter.data,
                    headers={"Nats-Msg-Id": f"retry-{letter.metadata.sequence.stream}"})
                await js.delete_msg(STREAM, letter.metadata.sequence.stream)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    finally:
        await nc.close()
    return letters


def _url() -> str:
    url = broker_url()
    if url is None:
        console.print("[red]No broker to ask[/]: start `pizza up` (same PIZZA_HOME) or set "
                      "PIZZA_NATS_URL.")
        raise typer.Exit(1)
    return url


def _describe(letter: Any) -> tuple[str, str]:
    try:
        meta = orjson.loads(letter.data)["metadata"]
        return f"{meta['type']} v{meta['version']}", str(meta["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "(unreadable)", "-"


@deadletters.command("list")
def list_letters(service: ServiceOption = None) -> None:
    """Show the dead letters with their reasons."""
    letters = asyncio.run(_read(_url(), service, settle=False))
    if not letters:
        console.print("No dead letters.")
        return
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("consumer", "message", "id", "reason", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        headers = letter.headers or {}
        kind, message_id = _describe(letter)
        table.add_row(headers.get(DEAD_CONSUMER, "?"), kind, message_id,
                      headers.get(DEAD_REASON, "?"), headers.get(DEAD_ATTEMPTS, "?"),
                      headers.get(DEAD_ERROR, "")[:300])
    console.print(table)


@deadletters.command()
def retry(service: ServiceOption = None) -> None:
    """Send the dead letters back to where they came from (after fixing the cause)."""
    letters = asyncio.run(_read(_url(), service, settle=True))
    console.print(f"{len(letters)} dead letter(s) sent back to their subjects.")
