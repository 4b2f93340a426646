"""``pizza migrate``: upgrade the services' schemas, show their history, write a revision.

Every start (``pizza up``, ``pizza serve``) upgrades its databases by itself; this command
does it without starting anything (before a deploy, or to see what a release will do), and
is where a developer writes the revision for a change of a service's tables.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from alembic.script import Script, ScriptDirectory
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url

from pizza.cli_common import fail
from pizza.eventing import migrations
from pizza.eventing.service import Service
from pizza.eventing.storage import Database, database_url, kernel_metadata

out = Console(highlight=False, soft_wrap=True)
START_PATIENCE = 60.0  # seconds the command waits for an unavailable database


def migrate(
    services: Annotated[list[str] | None, typer.Argument(
        metavar="[SERVICE]...",
        help="Services to migrate (default: all); with --new, the one chain to extend "
             "(a service, or 'kernel' for the outbox and inbox).")] = None,
    history: Annotated[bool, typer.Option(
        "--history", help="Show every revision and whether the database has it; "
                          "change nothing.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Fail if a tables module declares something no migration makes "
                        "(no database needed).")] = False,
    new: Annotated[str, typer.Option(
        "--new", metavar="MESSAGE", help="Write the next revision of one chain from what "
                                         "its tables module changed (autogenerate).")] = "",
) -> None:
    """Upgrade each service's database to its newest schema and print what was done."""
    from pizza.app import SERVICES, load

    names = list(services or [])
    if new:
        _new_revision(names, new)
        return
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise typer.BadParameter(f"unknown service {_bounded(', '.join(unknown))}: choose from "
                                 f"{', '.join(SERVICES)}", param_hint="SERVICE")
    chosen = load(names or list(SERVICES))
    if check:
        _check(chosen)
    elif history:
        asyncio.run(_history(chosen))
    else:
        asyncio.run(_upgrade(chosen))


def _where(service: str) -> str:
    url = make_url(database_url(service))
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.render_as_string(hide_password=True)}, schema {service}"


async def _upgrade(services: list[Service]) -> None:
    for service in services:
        db = Database(service.name, tables=service.tables)
        try:
            async with asyncio.timeout(START_PATIENCE):
                await db.create(log_changes=False)  # printed below
        except TimeoutError:
            fail(f"{service.name}: the database did not answer in {START_PATIENCE:.0f} s "
                 f"({_where(service.name)})")
        except RuntimeError as refused:  # a SQLite file held by a running process
            fail(f"{service.name}: {refused}")
        finally:
            await db.close()
        out.print(f"[bold]{service.name}[/]: {escape(db.migrated.summary())}")
        for change in db.migrated.changes:
            verb = "adopted " if change.kind == "adopted" else "applied "
            out.print(f"  {verb}{escape(change.revision)}  {escape(change.description)}")
        out.print(f"  [dim]{escape(_where(service.name))}[/]")


async def _history(services: list[Service]) -> None:
    for service in services:
        db = Database(service.name, tables=service.tables)
        path = make_url(db.url).database if db.is_sqlite else None
        out.print(f"[bold]{service.name}[/] [dim]{escape(_where(service.name))}[/]")
        try:
            recorded: tuple[str, ...] = ()
            if path and not _exists(path):  # no database yet: everything is pending
                rows = [(chain, rev, False) for chain, rev in _revisions(db.chains)]
            else:
                async with asyncio.timeout(START_PATIENCE), db.read() as conn:
                    rows = await conn.run_sync(migrations.history, db.chains)
                    recorded = await conn.run_sync(migrations.recorded)
        except TimeoutError:
            fail(f"{service.name}: the database did not answer in {START_PATIENCE:.0f} s")
        finally:
            await db.close()
        for chain, rev, applied in rows:
            mark = "[green]applied[/]" if applied else "[yellow]pending[/]"
            doc = (rev.doc or "").strip().splitlines()
            out.print(f"  {chain.label:<14} {escape(rev.revision):<22} {mark}  "
                      f"{escape(doc[0] if doc else '')}")
        for newer in sorted(set(recorded) - {rev.revision for _chain, rev, _ in rows}):
            out.print(f"  {'':<14} {escape(_bounded(newer)):<22} [red]unknown[/]  recorded "
                      "by a newer release: this one leaves the schema as it is")


def _exists(path: str) -> bool:
    return Path(path).exists()


def _revisions(chains: list[migrations.Chain]) -> list[tuple[migrations.Chain, Script]]:
    script = ScriptDirectory.from_config(migrations.config(chains))
    return [(chain, rev) for chain in chains
            for rev in migrations.chain_revisions(script, chain)]


def _chains(service: Service) -> list[migrations.Chain]:
    chains = [migrations.kernel_chain(kernel_metadata)]
    own = migrations.service_chain(service.name, service.tables)
    if own is None:
        fail(f"{service.name} has no migrations folder beside its tables module")
    return [*chains, own]


def _check(services: list[Service]) -> None:
    found: list[str] = []
    kernel = migrations.kernel_chain(kernel_metadata)
    found += [f"kernel: {_bounded(d)}" for d in migrations.unmigrated([kernel])]
    for service in services:
        chains = _chains(service)
        found += [f"{service.name}: {_bounded(d)}"
                  for d in migrations.unmigrated(chains, only=chains[-1])]
    for line in found:
        out.print(f"[red]{escape(line)}[/]")
    if found:
        fail("the tables above differ from what the migrations make: write a revision "
             "with `pizza migrate --new \"what changed\" SERVICE` (or kernel)")
    out.print("the migrations make every table of the kernel and of "
              f"{', '.join(s.name for s in services)}")


def _bounded(difference: object) -> str:
    text = " ".join(str(difference).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _new_revision(names: list[str], message: str) -> None:
    from pizza.app import SERVICES, load

    if len(names) != 1 or names[0] not in (*SERVICES, migrations.KERNEL):
        raise typer.BadParameter(f"name one of {', '.join(SERVICES)} or "
                                 f"{migrations.KERNEL}", param_hint="SERVICE")
    label = names[0]
    if label == migrations.KERNEL:
        chains = [migrations.kernel_chain(kernel_metadata)]
    else:
        chains = _chains(load([label])[0])
    written = migrations.new_revision(chains, label, message)
    if written is None:
        out.print(f"{label}: its tables match its migrations; no revision written")
        return
    out.print(f"{label}: wrote {written}")
    out.print("  read it before committing: autogenerate cannot see renames (it drops and "
              "adds) and gives a new NOT NULL column no value for existing rows")
