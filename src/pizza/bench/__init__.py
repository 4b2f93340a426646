"""Benchmarks of the kernel (publish, consume, handlers) and of the system (e2e, api,
orders: CPU per completed order and throughput at one and at every process).

    from pizza.bench import run
    results = run(["publish", "consume"], quick=True, out=Path("bench-results/results.json"),
                  plot_dir=None)

Each scenario starts its own embedded nats-server (and a temp PIZZA_HOME); every
comparison is a ratio of variants measured in the same run, alternating, median of the
rounds. ``python -m pizza.bench --quick`` runs them from the command line; ``pizza bench``
calls ``run``.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from pizza.bench.common import Settings, machine_info

SCENARIOS = ("publish", "consume", "handlers", "e2e", "api", "orders")

Scenario = Callable[[Settings], Awaitable[dict[str, Any]]]


def _scenario(name: str) -> Scenario:
    if name == "publish":
        from pizza.bench import publish

        return publish.scenario
    if name == "consume":
        from pizza.bench import consume

        return consume.scenario
    if name == "handlers":
        from pizza.bench import handlers

        return handlers.scenario
    if name == "e2e":
        from pizza.bench import system

        return system.e2e
    if name == "api":
        from pizza.bench import system

        return system.api
    if name == "orders":
        from pizza.bench import orders

        return orders.scenario
    raise ValueError(f"unknown scenario {name!r}: choose from {', '.join(SCENARIOS)}")


async def _guarded(name: str, scenario: Scenario, settings: Settings) -> dict[str, Any]:
    from pizza.bench.system import Skip

    began = time.perf_counter()
    try:
        result = await scenario(settings)
    except Skip as skip:
        result = {"status": "skipped", "reason": str(skip)}
    except Exception as error:
        result = {"status": "error", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()}
    result["duration_s"] = round(time.perf_counter() - began, 2)
    return result


def run(scenarios: list[str], quick: bool, out: Path, plot_dir: Path | None, *,
        n: int | None = None, rounds: int | None = None,
        console: Console | None = None, **extra: Any) -> dict[str, Any]:
    """Run the scenarios one after the other, print a table each, write all as JSON to ``out``.

    ``n`` and ``rounds`` override the message count (publish, consume, handlers) and the
    number of rounds (default 3): tests use them for a tiny run. Returns the results.
    """
    names = list(scenarios) or list(SCENARIOS)
    for name in names:
        _scenario(name)  # unknown names fail before anything runs
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: room for the tables
            console = Console(width=140)
    settings = Settings(quick=quick, n=n, rounds=rounds, extra=extra)
    results: dict[str, Any] = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "settings": {"n": n, "rounds": settings.round_count, **extra},
        "machine": machine_info(),
        "scenarios": {},
    }
    from pizza.bench import report

    for name in names:
        console.print(f"[bold]{name}[/] ...")
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        result = asyncio.run(_guarded(name, _scenario(name), settings))
        if load is not None:  # how busy the machine was around it (1, 5, 15 minutes)
            result["load_average"] = {"before": list(load), "after": list(os.getloadavg())}
        results["scenarios"][name] = result
        report.show(console, name, result)
        if plot_dir is not None and result.get("status") == "ok":
            path = report.plot(name, result, plot_dir)
            if path is not None:
                result["plot"] = str(path)
            elif importlib.util.find_spec("matplotlib") is None:
                result["plot"] = "skipped: matplotlib is not installed (pip install -e '.[bench]')"
                console.print(f"[yellow]{name}: chart {result['plot']}[/]")
        _write(out, results)
    return results


def _write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


__all__ = ["SCENARIOS", "run"]
