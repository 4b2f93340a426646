"""What every `pizza` tool does the same way: fail with one line, reach the broker fast.

A tool talks to the broker of a running system (``PIZZA_NATS_URL``, else the URL `pizza up`
records in ``$PIZZA_HOME/nats/url``), as the ``operator`` user (``tool_credentials``). If
nothing answers there, the tool says so in one line within seconds, instead of
reconnecting for minutes to a broker that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import nats
import typer
from nats.aio.client import Client as NATS
from rich.console import Console
from rich.markup import escape

from pizza.eventing import settings
from pizza.eventing.settings import broker_url, nats_servers
from pizza.eventing.transport import credentials
from pizza.eventing.transport.credentials import BadCredentials, Credentials

CONNECT_SECONDS = 2.0

errors = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 1, no traceback."""
    errors.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(1)


def no_broker(url: str) -> str:
    return f"no broker answers at {url}: is `pizza up` running with this PIZZA_HOME?"


def recorded_broker() -> str:
    """The running system's broker URL, or exit saying how to give one."""
    url = broker_url()
    if url is None:
        fail("no broker recorded: start `pizza up` (same PIZZA_HOME) or set PIZZA_NATS_URL")
    return url


def tool_credentials(home: Path | None = None) -> Credentials | None:
    """Who a tool is on the bus: ``PIZZA_NATS_CREDS`` if set, else the ``operator`` seed
    that the embedded broker of PIZZA_HOME (or ``home``) made; None if neither exists
    (a broker without authorization)."""
    given = settings.nats_creds()
    path = given or credentials.seed_path(settings.credentials_dir(home), credentials.OPERATOR)
    if given is None and not path.is_file():
        return None
    try:
        return credentials.load(path)
    except BadCredentials as error:
        fail(str(error))


def check_nats_creds(services: Sequence[str] = ()) -> None:
    """A PIZZA_NATS_CREDS that cannot be used fails at start, in one line: a seed file,
    or a directory holding the seed of each of ``services`` (settings.nats_creds)."""
    given = settings.nats_creds()
    if given is None:
        return
    try:
        if given.is_dir():
            for service in services:
                credentials.load(credentials.seed_path(given, service))
        else:
            credentials.load(given)
    except BadCredentials as error:
        fail(f"PIZZA_NATS_CREDS: {error}")


def connect_options(home: Path | None = None) -> dict[str, Any]:
    """``nats.connect`` keywords that present the tool's credentials (see above)."""
    found = tool_credentials(home)
    return found.connect_options() if found is not None else {}


async def _quiet(_error: Exception) -> None:
    """nats-py logs every failed attempt with a traceback; the tool says it in one line."""


@contextlib.asynccontextmanager
async def broker(url: str, name: str = "pizza-tool") -> AsyncIterator[NATS]:
    """A connection for a tool: a short connect timeout, no reconnect loop.

    nats-py retries a refused first connect forever when ``max_reconnect_attempts`` is 0
    (it only gives a server up once its attempts *exceed* a positive limit), so: one
    retry, and a deadline over the whole connect in case a server half-answers.
    """
    try:
        nc = await asyncio.wait_for(
            nats.connect(nats_servers(url), name=name, connect_timeout=CONNECT_SECONDS,
                         allow_reconnect=False, max_reconnect_attempts=1,
                         reconnect_time_wait=0.2, error_cb=_quiet, **connect_options()),
            CONNECT_SECONDS + 1)
    except Exception as error:
        if "authorization violation" in str(error).lower():
            fail(f"the broker at {url} does not admit us: set PIZZA_NATS_CREDS, or run "
                 "from the PIZZA_HOME of the `pizza up` that runs it (its operator seed)")
        fail(no_broker(url))
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def pizza_command() -> list[str]:
    """How to run this installation's ``pizza`` as a child process (benchmarks, torture)."""
    script = Path(sys.executable).parent / "pizza"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from pizza.cli import app; app()"]
