"""The `pizza torture` command (imports the suite only when it runs)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

NAMES = ("writers", "kill", "broker", "database", "hostile", "cluster")


def torture(
    scenarios: Annotated[list[str] | None, typer.Argument(
        metavar="[SCENARIO]...",
        help="writers, kill, broker, database, hostile, cluster (default: all)")] = None,
    orders: Annotated[int | None, typer.Option(
        help="Orders per scenario (default 2000, 120 with --quick).")] = None,
    quick: Annotated[bool, typer.Option(
        help="The short form for CI: fewer orders, shorter outages.")] = False,
    keep: Annotated[bool, typer.Option(
        help="Keep each scenario's directory (logs, stores) for a post-mortem.")] = False,
    processes: Annotated[int | None, typer.Option(
        help="Where a scenario runs `pizza up`: its --processes (0: a process per "
        "service, the default; 1: one process; N: spread over N).")] = None,
) -> None:
    """Run the real system under concurrency, crashes, outages and hostile input; print a
    ledger per scenario. Exits 1 if any scenario misses the goal: 0 lost, 0 duplicate
    effects, 0 stuck, 0 healthy messages dead-lettered, /api/health always under 1 s."""
    names = list(scenarios or NAMES)
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(NAMES)}", param_hint="SCENARIO")
    if orders is not None and orders < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--orders")

    def interrupted(*_: Any) -> None:  # SIGTERM cleans up as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    console = Console()
    if processes is not None and processes < 0:
        raise typer.BadParameter("0, 1 or more", param_hint="--processes")
    ledgers = asyncio.run(_run(console, names, orders, quick, keep, processes))
    from pizza.torture.ledger import summary

    for line in summary(ledgers):
        console.print(line)
    if not all(ledger.met for ledger in ledgers):
        raise typer.Exit(1)


async def _run(console: Console, names: list[str], orders: int | None, quick: bool,
               keep: bool, processes: int | None) -> list[Any]:
    from pizza.torture import run_scenario

    ledgers = []
    for name in names:
        with console.status(f"torture: {name}{' (quick)' if quick else ''} ..."):
            ledger = await run_scenario(name, orders=orders, quick=quick, keep=keep,
                                        processes=processes)
        console.print(ledger.table())
        for event in ledger.events:
            console.print(f"  [dim]{escape(event)}[/]")
        for miss in ledger.misses():
            console.print(f"  [red]miss:[/] {escape(miss)}")
        ledgers.append(ledger)
    return ledgers
