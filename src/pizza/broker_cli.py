"""`pizza broker-config`: what a nats-server of your own needs to admit our services.

It writes the same thing the embedded broker of `pizza up` uses: one nkey user per service,
allowed only what the service declares (``eventing/transport/permissions.py``), and an
``operator`` user for the tools, with each user's seed file. Seeds already in the
directory are kept, so running it again after a service changes its declarations only
rewrites the permissions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pizza.cli_common import fail

console = Console(highlight=False)

SERVER_CONF = """\
# nats-server -c {conf}
# Written by `pizza broker-config`; the users and their permissions are in
# authorization.conf (rewritten by each run), their seeds in credentials/ (kept).
host: {host}
port: {port}
jetstream {{
  store_dir: {store}
}}
include ./authorization.conf
"""


def broker_config(
    out: Annotated[Path, typer.Option("--out", help="The directory to write into.")],
    services: Annotated[list[str] | None, typer.Argument(
        help="The services to admit (default: all seven).")] = None,
    host: Annotated[str, typer.Option(help="The address nats-server.conf listens on.")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port nats-server.conf listens on.")] = 4222,
) -> None:
    """Write a nats-server config with one user per service and their seed files."""
    from pizza.app import SERVICES, load
    from pizza.eventing.transport.permissions import broker_users

    unknown = sorted(set(services or ()) - set(SERVICES))
    if unknown:
        fail(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    out = out.resolve()
    try:
        users = broker_users(load(services or SERVICES), out / "credentials")
        _write(out / "authorization.conf", users.config)
        conf = out / "nats-server.conf"
        _write(conf, SERVER_CONF.format(conf=conf, host=_quoted(host), port=port,
                                        store=_quoted(str(out / "jetstream"))))
    except OSError as error:
        fail(f"cannot write to {out}: {error.strerror or error}")
    console.print(f"wrote {escape(str(conf))} and {escape(str(out / 'authorization.conf'))}")
    for name, seed in users.seeds.items():
        console.print(f"  {name:<14} {escape(str(seed))}")
    console.print(f"run: nats-server -c {escape(str(conf))}")
    console.print("then, once: PIZZA_NATS_URL=nats://HOST:PORT PIZZA_NATS_CREDS=<operator's "
                  "seed> pizza broker-provision")
    console.print("then: PIZZA_NATS_URL=nats://HOST:PORT PIZZA_NATS_CREDS=<its seed> "
                  "pizza serve SERVICE")


def _write(path: Path, text: str) -> None:
    """Owner-only: the file names every user the broker admits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def broker_provision(
    services: Annotated[list[str] | None, typer.Argument(
        help="The services whose queues to create (default: all seven).")] = None,
) -> None:
    """Create every service's durable queues and declarations on the broker at
    PIZZA_NATS_URL (as PIZZA_NATS_CREDS, the operator's seed), before any service starts:
    a consumer started after its producer then misses none of its first messages."""
    import asyncio

    from pizza.app import SERVICES, load
    from pizza.eventing import settings
    from pizza.eventing.topology import provision_broker
    from pizza.eventing.transport import credentials

    unknown = sorted(set(services or ()) - set(SERVICES))
    if unknown:
        fail(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    url = settings.nats_url()
    if url is None:
        fail("set PIZZA_NATS_URL to the broker to provision")
    given = settings.nats_creds()
    chosen = load(services or SERVICES)
    try:
        asyncio.run(provision_broker(chosen, url, credentials.load(given) if given else None))
    except Exception as error:
        fail(f"could not provision the broker at PIZZA_NATS_URL: {escape(str(error)[:300])}")
    for service in chosen:
        console.print(f"  {service.name:<14} {len(service.subscriptions)} queues")
