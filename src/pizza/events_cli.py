"""``pizza events``: the event catalog and the schema gate, from the command line.

    pizza events catalog            every type and version, its producer and consumers
    pizza events docs site/         a static HTML catalog and the AsyncAPI document
    pizza events check              do the code's schemas keep the committed snapshots' promises?
    pizza events snapshot           write the snapshots (schemas/<Type>.v<n>.json)
    pizza events usage [TYPE]       who consumes which version, from the live registry
    pizza events forget SERVICE     retire a service's declaration

The catalog is the code's: all services are imported (which starts nothing), so it is
complete without a running system.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pizza.eventing import Service, registry
from pizza.eventing.catalog import Registry
from pizza.eventing.compatibility import MODES
from pizza.eventing.transport.base import Transport

events = typer.Typer(help="The event catalog and the schema gate.", no_args_is_help=True,
                     add_completion=False)
console = Console()

TITLE = "Plant-Based Pizza"
VERSION = "0.1.0"
SCHEMAS = Path("schemas")

SchemasOption = Annotated[Path, typer.Option(
    "--schemas", help="The directory of committed schema snapshots.")]


def system() -> tuple[Registry, list[Service]]:
    """The registry with every message, and every service (importing them declares them)."""
    from pizza.app import load

    return registry, load()


@events.command("catalog")
def show_catalog(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
) -> None:
    """Every event, command and reply: version, kind, producer, consumers, deprecation."""
    from pizza.eventing.governance import catalog

    entries = catalog(*system())
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table(title=f"{len(entries)} message types and versions")
    table.add_column("type", no_wrap=True)
    table.add_column("v", justify="right")
    for column in ("kind", "producer", "consumers", "deprecated"):
        table.add_column(column)
    for entry in entries:
        producer = entry["producer"] or "-"
        if entry["target"]:
            producer = f"{producer} -> {entry['target']}"
        sunset = f"[yellow]sunset {entry['sunset']}[/]" if entry["deprecated"] else ""
        table.add_row(escape(entry["type"]), str(entry["version"]), entry["kind"],
                      escape(producer), escape(", ".join(entry["consumers"]) or "-"), sunset)
    console.print(table)


@events.command()
def docs(
    directory: Annotated[Path, typer.Argument(help="Where to write index.html and "
                                              "asyncapi.json.")],
) -> None:
    """Write a static, self-contained HTML catalog and the AsyncAPI document."""
    from pizza.eventing.asyncapi import asyncapi
    from pizza.eventing.governance import catalog, metadata_schema

    messages, services = system()
    directory.mkdir(parents=True, exist_ok=True)
    page = render_html(catalog(messages, services), metadata_schema(), TITLE)
    (directory / "index.html").write_text(page, encoding="utf-8")
    from pizza.eventing.settings import broker_url

    document = asyncapi(messages, services, TITLE, VERSION, broker_url())  # servers: if known
    (directory / "asyncapi.json").write_text(json.dumps(document, indent=2) + "\n",
                                             encoding="utf-8")
    typer.echo(f"wrote {directory / 'index.html'} and {directory / 'asyncapi.json'}")


def _mode(value: str) -> str:
    if value.upper() not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    return value.upper()


@events.command()
def check(
    mode: Annotated[str, typer.Option(help="BACKWARD, FORWARD or FULL.")] = "BACKWARD",
    schemas: SchemasOption = SCHEMAS,
) -> None:
    """The schema gate: fail (exit 1) if a change breaks a snapshotted version's consumers."""
    from pizza.eventing import governance

    report = governance.check(*system(), schemas, _mode(mode))
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


@events.command()
def snapshot(
    schemas: SchemasOption = SCHEMAS,
    force: Annotated[bool, typer.Option(
        help="Overwrite incompatible snapshots and delete those of removed versions.")] = False,
    mode: Annotated[str, typer.Option(help="BACKWARD, FORWARD or FULL.")] = "BACKWARD",
) -> None:
    """Write the schema snapshot of every message; an incompatible one only with --force."""
    from pizza.eventing import governance

    messages, services = system()
    try:
        done = governance.snapshot(messages, schemas, force=force, mode=_mode(mode),
                                   services=services)
    except governance.SnapshotRefused as refused:
        typer.echo(refused.report.render())
        typer.echo("nothing written: these snapshots are published promises "
                   "(--force overrides)")
        raise typer.Exit(1) from None
    for path in done.written:
        typer.echo(f"wrote {path}")
    for path in done.removed:
        typer.echo(f"deleted {path}")
    typer.echo(f"{len(done.written)} written, {len(done.unchanged)} unchanged, "
               f"{len(done.removed)} deleted in {schemas}")


# -- the live registry ---------------------------------------------------------------------


def _on_the_broker(work: Callable[[Transport], Awaitable[Any]]) -> Any:
    """Run ``work`` against the running system's broker (PIZZA_NATS_URL or `pizza up`'s);
    one line and exit 1 within seconds if nothing answers there."""
    from pizza.cli_common import (
        CONNECT_SECONDS,
        broker,
        fail,
        no_broker,
        recorded_broker,
        tool_credentials,
    )
    from pizza.eventing.transport.nats import NatsTransport

    url = recorded_broker()

    async def session() -> Any:
        async with broker(url, "pizza-events"):  # fails fast where the transport would wait
            pass
        transport = NatsTransport(url, name="pizza-events", credentials=tool_credentials())
        try:
            await asyncio.wait_for(transport.start(), 5 * CONNECT_SECONDS)
        except Exception:
            await transport.close()
            fail(no_broker(url))
        try:
            return await work(transport)
        finally:
            await transport.close()

    return asyncio.run(session())


@events.command()
def usage(
    message_type: Annotated[str | None, typer.Argument(
        help="A message type, e.g. OrderConfirmed; all when omitted.")] = None,
) -> None:
    """Who produces and consumes which version, as the services declared it on the bus."""
    from pizza.eventing import usage as live

    declarations: list[live.Declaration] = _on_the_broker(live.declarations)
    table = Table(title=f"Live usage of {message_type or 'every message'}")
    for column in ("type", "v", "producers", "consumers"):
        table.add_column(column)
    keys = sorted({key for d in declarations for key in (*d.produces, *d.consumes)
                   if message_type is None or key[0] == message_type})
    for key in keys:
        producers = [d.service for d in declarations if key in d.produces]
        consumers = [d.service for d in declarations if key in d.consumes]
        table.add_row(key[0], str(key[1]), ", ".join(producers) or "-",
                      ", ".join(consumers) or "[yellow]nobody[/]")
    if not keys:
        console.print(f"No service has declared {message_type or 'anything'} yet.")
        raise typer.Exit(1 if message_type else 0)
    console.print(table)
    seen = ", ".join(f"{d.service} ({d.host}, {d.at})" for d in declarations)
    console.print(f"[dim]declared by {seen}[/]")


@events.command()
def forget(service: Annotated[str, typer.Argument(help="The retired service.")]) -> None:
    """Remove a retired service's declaration, so producers stop serving its versions."""
    from pizza.eventing import usage as live

    _on_the_broker(lambda transport: live.forget(transport, service))
    console.print(f"{service} forgotten: it no longer counts as a consumer of anything.")


# -- the HTML catalog ----------------------------------------------------------------------

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2521;background:#f6f8f5}
header{background:#2f5d3a;color:#fff;padding:1.2rem 2rem}header a{color:#d9f2dd}
main{max-width:60rem;margin:0 auto;padding:1rem 2rem}
nav ul{columns:2;padding-left:1.2rem}
section{background:#fff;border:1px solid #d6ded6;border-radius:8px;padding:.2rem 1.2rem 1rem;
margin:1.2rem 0}
h2{margin-bottom:.2rem}.kind{font-size:.75rem;text-transform:uppercase;
background:#e4efe5;border-radius:4px;padding:.1rem .4rem;vertical-align:middle}
.deprecated{background:#fff3cd;border-left:4px solid #d39e00;padding:.4rem .8rem}
dl{display:grid;grid-template-columns:8rem 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
pre{background:#f3f5f2;padding:.8rem;overflow:auto;border-radius:6px;font-size:.85rem}
code{font-family:ui-monospace,monospace}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _anchor(entry: dict[str, Any]) -> str:
    return f"{entry['type']}-v{entry['version']}"


def _section(entry: dict[str, Any]) -> str:
    name = f"{entry['type']} v{entry['version']}"
    rows = [("subject", f"<code>{_e(entry['subject'])}</code>"),
            ("producer", _e(entry["producer"] or "none declared"))]
    if entry["target"]:
        rows.append(("target", _e(entry["target"])))
    rows.append(("consumers", _e(", ".join(entry["consumers"]) or "none known")))
    warning = ""
    if entry["deprecated"]:
        warning = (f'<p class="deprecated"><strong>Deprecated</strong>: sunset on '
                   f"{_e(entry['sunset'])}. Consumers move to a newer version.</p>")
    schema = json.dumps(entry["schema"], indent=2, sort_keys=True)
    return (f'<section id="{_e(_anchor(entry))}"><h2>{_e(name)} '
            f'<span class="kind">{_e(entry["kind"])}</span></h2>{warning}'
            f"<p>{_e(entry['description'])}</p><dl>"
            + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
            + f"</dl><details open><summary>JSON Schema of data</summary>"
            f"<pre><code>{_e(schema)}</code></pre></details></section>")


def render_html(entries: list[dict[str, Any]], metadata: dict[str, Any], title: str) -> str:
    """One self-contained page: a contents list and a section per type and version."""
    contents = "".join(
        f'<li><a href="#{_e(_anchor(entry))}">{_e(entry["type"])} v{entry["version"]}</a>'
        f" ({_e(entry['kind'])}{', deprecated' if entry['deprecated'] else ''})</li>"
        for entry in entries)
    envelope = json.dumps(metadata, indent=2, sort_keys=True)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: event catalog</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}: event catalog</h1><p>{len(entries)} message types and "
        'versions. Machine-readable: <a href="asyncapi.json">asyncapi.json</a> '
        "(AsyncAPI 3.0).</p></header><main>"
        f"<nav><h2>Messages</h2><ul>{contents}</ul></nav>"
        '<section id="envelope"><h2>The envelope</h2><p>Every message is '
        "<code>{&quot;metadata&quot;: {...}, &quot;data&quot;: {...}}</code>; the metadata "
        "is the same for all, the data is the schema of its type and version.</p>"
        "<details><summary>JSON Schema of metadata</summary>"
        f"<pre><code>{_e(envelope)}</code></pre></details></section>"
        + "".join(_section(entry) for entry in entries)
        + "</main></body></html>\n"
    )
