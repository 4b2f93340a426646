"""``pizza status``: the running system at a glance, refreshed every second.

One row per service and queue: lag (messages waiting), rate (handled per second, between
two looks), in flight, the age of the service's oldest outbox row, dead letters, the
circuit breaker and health. It reads only what the system serves, ``/api/health`` and
``/metrics``, so it works against ``pizza up`` and against each ``pizza serve`` of a
distributed deployment alike (``--url`` several times). ``--once`` prints one frame and
exits (for scripts and tests); a number the system could not get in time shows as ``?``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pizza.cli_common import fail
from pizza.eventing import settings

DEFAULT_URL = "http://127.0.0.1:8000"
SERVED_URL_FILE = "url"  # $PIZZA_HOME/<this>: where `pizza up` leaves the URL it serves
ASK_SECONDS = 2.0
MAX_FIELD = 60  # characters of any name the system reports, as printed

Labels = frozenset[tuple[str, str]]


@dataclass
class Look:
    """What one system (one URL) said at one moment."""

    url: str
    at: float
    health: dict[str, Any] | None = None
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)
    problem: str | None = None

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get(name, {}).get(frozenset(labels.items()))

    def breaker(self, service: str) -> str | None:
        """The state of the service's circuit breaker (``name: state`` if it has more)."""
        states = sorted((labels.get("breaker", ""), labels.get("state", ""))
                        for labels in (dict(key) for key, value in self.samples.get(
                            "pizza_circuit_breaker_state", {}).items() if value == 1)
                        if labels.get("service") == service)
        if len(states) == 1:
            return states[0][1]
        return ", ".join(f"{name}: {state}" for name, state in states) or None


def served_urls() -> list[str]:
    """The URL the system on $PIZZA_HOME serves (`pizza up` records it), else :8000."""
    try:
        from pizza.reaching import system_url
    except ImportError:  # a tree without it: the recorded file, read here
        url = ""
        with contextlib.suppress(OSError):
            url = (settings.home() / SERVED_URL_FILE).read_text().strip()
        return [url if url.startswith(("http://", "https://")) else DEFAULT_URL]
    return [system_url()]


def operator_headers() -> dict[str, str]:
    """An operator's bearer token (PIZZA_TOKEN, else the home's own issuer), where the
    system checks one; none where tokens come from an outside identity provider."""
    try:
        from pizza.reaching import NoToken, signed_in
    except ImportError:  # a system without people authentication
        return {}
    try:
        return signed_in("operator")
    except NoToken:
        return {}


async def look(client: httpx.AsyncClient, url: str) -> Look:
    seen = Look(url, time.monotonic())
    try:
        health, metrics = await asyncio.gather(client.get(f"{url}/api/health"),
                                               client.get(f"{url}/metrics"))
    except httpx.HTTPError as error:
        seen.problem = f"no answer: {type(error).__name__}"
        return seen
    if health.status_code in (200, 503):
        try:
            seen.health = health.json()
        except ValueError:
            seen.problem = "/api/health is not JSON"
    else:
        seen.problem = f"/api/health answered {health.status_code}"
    if metrics.status_code == 200:
        for family in text_string_to_metric_families(metrics.text):
            for sample in family.samples:
                # `pizza up`'s gateway labels each sample with the process it came from;
                # a service's numbers are told apart by their service label already.
                labels = {k: v for k, v in sample.labels.items() if k != "process"}
                seen.samples.setdefault(sample.name, {})[
                    frozenset(labels.items())] = sample.value
    else:
        seen.problem = seen.problem or f"/metrics answered {metrics.status_code}"
    return seen


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "?"
    return f"{value:,.{digits}f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds == 0:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _short(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD - 3] + "..."


def rows(now: Look, before: Look | None) -> list[tuple[str, ...]]:
    """One row per service and queue of one system (``before``: its previous look)."""
    if now.health is None:
        return [(_short(now.url), "", "", "", "", "", "", "", now.problem or "?")]
    found: list[tuple[str, ...]] = []
    services = now.health.get("services") or {}
    elapsed = now.at - before.at if before is not None else 0.0
    for service in sorted(services):
        report = services[service] or {}
        healthy = report.get("database") == "ok" and now.health.get("status") == "ok"
        health = "ok" if healthy else (
            "database away" if report.get("database") != "ok" else "degraded")
        oldest = _age(now.value("pizza_outbox_oldest_age_seconds", service=service))
        breaker = now.breaker(service) or "-"
        queues = sorted(report.get("queues") or {})
        for index, queue in enumerate(queues or [""]):
            labels = {"service": service, "queue": queue}
            handled = now.value("pizza_queue_handled_total", **labels)
            earlier = before.value("pizza_queue_handled_total", **labels) if before else None
            rate = None
            if handled is not None and earlier is not None and elapsed > 0:
                rate = max(0.0, handled - earlier) / elapsed
            found.append((
                _short(service) if index == 0 else "",
                _short(queue) or "-",
                _number(now.value("pizza_queue_pending_messages", **labels)),
                "…" if before is None else _number(rate, 1),
                _number(now.value("pizza_queue_in_flight_messages", **labels)),
                oldest if index == 0 else "",
                _number(now.value("pizza_dead_letters_messages", **labels)),
                breaker if index == 0 else "",
                health if index == 0 else "",
            ))
    return found


COLUMNS = ("service", "queue", "lag", "rate/s", "in flight", "outbox age", "dead",
           "breaker", "health")


def frame(looks: Sequence[Look], before: dict[str, Look]) -> Group:
    parts: list[Any] = []
    for now in looks:
        lag = now.value("pizza_event_loop_lag_seconds")
        title = f"{_short(now.url)}" + (f"   loop lag {lag * 1000:.0f} ms" if lag is not None
                                        else "")
        table = Table(title=Text(title), title_justify="left", expand=False,
                      highlight=False)
        for index, name in enumerate(COLUMNS):
            table.add_column(name, justify="right" if 2 <= index <= 6 else "left",
                             no_wrap=True)
        for row in rows(now, before.get(now.url)):
            table.add_row(*(Text(cell) for cell in row))
        if now.problem and now.health is not None:
            table.caption = Text(_short(now.problem))
        parts.append(table)
    return Group(*parts)


async def watch(urls: Sequence[str], once: bool, interval: float, console: Console) -> None:
    headers = operator_headers()
    timeout = httpx.Timeout(ASK_SECONDS)
    before: dict[str, Look] = {}
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
        looks = await asyncio.gather(*(look(client, url) for url in urls))
        if all(seen.health is None and seen.problem and seen.problem.startswith("no answer")
               for seen in looks):
            fail(f"nothing answers at {', '.join(urls)}: is `pizza up` running?")
        if once:  # a rate needs two looks: the second a moment after the first
            await asyncio.sleep(min(interval, 1.0))
            before = {seen.url: seen for seen in looks}
            looks = await asyncio.gather(*(look(client, url) for url in urls))
            console.print(frame(looks, before))
            return
        with Live(frame(looks, before), console=console, auto_refresh=False,
                  transient=False) as live:
            while True:
                before = {seen.url: seen for seen in looks}
                await asyncio.sleep(interval)
                looks = await asyncio.gather(*(look(client, url) for url in urls))
                live.update(frame(looks, before), refresh=True)


def status(
    url: Annotated[list[str] | None, typer.Option(
        help="A system's base URL (repeat for each `pizza serve`); default: the URL "
             "`pizza up` serves under PIZZA_HOME, else http://127.0.0.1:8000.")] = None,
    once: Annotated[bool, typer.Option(help="Print one frame and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """The running system live: per service and queue, lag, rate, in flight, oldest
    outbox row, dead letters, breaker, health."""
    urls = [u.rstrip("/") for u in (url or served_urls())]
    # Not a terminal (a script, a file): wide enough for every column, never wrapped.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    try:
        asyncio.run(watch(urls, once, max(0.2, interval), console))
    except KeyboardInterrupt:
        pass
