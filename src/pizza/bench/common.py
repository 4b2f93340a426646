"""What every scenario shares: the payload, a private broker, rounds, results, machine info.

Measuring rules (README, "Benchmarks"): every comparison is a ratio of two variants
measured in the same process against the same broker, the variants alternate within each
round (the starting variant rotates), and what is reported is the median of the rounds,
per variant and per ratio (the ratio of each round, then their median: paired, so a slow
moment of the machine hits both sides of a ratio).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.eventing import Event, event, registry
from pizza.eventing.catalog import Registry
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.base import Outgoing
from pizza.eventing.transport.embedded import EmbeddedNats, find_nats_server

PAYLOAD_BYTES = 420
STREAM = "PIZZA_EVENTS"


# -- the payload --------------------------------------------------------------------------


class BenchLine(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    menu_item_id: str
    quantity: int


@event("BenchPinged", version=1, source="bench",
       description="A benchmark message: an order-sized envelope of ~420 bytes on the wire.")
class BenchPingedV1(Event):
    order_id: str
    sequence: int
    total_pence: int
    lines: list[BenchLine]


# The decorator declares the message in the process-wide registry, which `pizza events`
# (the catalog, the schema gate) reads: the benchmark's message lives in a registry of its
# own instead, which the benchmark's ServiceHosts are given.
if registry.get(*BenchPingedV1.info.key) is BenchPingedV1:
    del registry.messages[BenchPingedV1.info.key]
BENCH_REGISTRY = Registry()
BENCH_REGISTRY.add(BenchPingedV1)

SUBJECT = BenchPingedV1.info.subject


def _traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def make_message(sequence: int) -> Outgoing:
    """One real envelope (``Envelope(Metadata(...), data).encode()``) of ~420 bytes.

    The metadata (ids, time, traceparent) is ~290 bytes; the data is sized to the rest.
    """
    meta = Metadata(type=BenchPingedV1.info.type, version=BenchPingedV1.info.version,
                    source="bench", traceparent=_traceparent())
    data = BenchPingedV1(
        order_id=f"o-{secrets.token_hex(4)}",
        sequence=sequence,
        total_pence=2350,
        lines=[BenchLine(menu_item_id="margherita", quantity=2)],
    ).to_data()
    payload = Envelope(meta, data).encode()
    return Outgoing(meta.id, SUBJECT, payload, meta.traceparent)


def make_messages(count: int) -> list[Outgoing]:
    """Fresh ids every time: the broker's duplicate window must never drop a message."""
    return [make_message(i) for i in range(count)]


# -- a private broker and state directory ---------------------------------------------------


@contextlib.contextmanager
def pizza_home(path: Path) -> Iterator[Path]:
    """PIZZA_HOME (and no PIZZA_DATABASE_URL / PIZZA_NATS_URL) for the scenario, restored after."""
    saved = {name: os.environ.get(name)
             for name in ("PIZZA_HOME", "PIZZA_DATABASE_URL", "PIZZA_NATS_URL")}
    os.environ["PIZZA_HOME"] = str(path)
    os.environ.pop("PIZZA_DATABASE_URL", None)
    os.environ.pop("PIZZA_NATS_URL", None)
    try:
        yield path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.asynccontextmanager
async def private_broker(prefix: str) -> AsyncIterator[tuple[Path, EmbeddedNats]]:
    """A temp dir as PIZZA_HOME and an embedded nats-server of its own, stopped after."""
    with tempfile.TemporaryDirectory(prefix=f"pizza-bench-{prefix}-") as tmp:
        home = Path(tmp)
        with pizza_home(home):
            server = EmbeddedNats(home / "nats")
            await server.start()
            try:
                yield home, server
            finally:
                await server.stop()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


# -- rounds and results ---------------------------------------------------------------------


Variant = Callable[[int], Awaitable[float]]  # (count) -> seconds


T = TypeVar("T")


def rotation(names: Sequence[T], round_index: int) -> list[T]:
    """The variants in the order of one round: round r starts with variant r (mod n)."""
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


async def alternate(variants: dict[str, Variant], count: int, rounds: int,
                    warmup: int = 0) -> dict[str, list[float]]:
    """Run every variant once per round, rotating who goes first; return seconds per round."""
    names = list(variants)
    if warmup:
        for name in names:
            await variants[name](warmup)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in rotation(names, index):
            seconds[name].append(await variants[name](count))
    return seconds


def variant(label: str, values: Sequence[float], unit: str, *,
            seconds: Sequence[float] | None = None, **extra: Any) -> dict[str, Any]:
    """One line of a scenario's table: per-round values and their median."""
    values = [float(v) for v in values]
    result: dict[str, Any] = {
        "label": label,
        "unit": unit,
        "median": statistics.median(values) if values else 0.0,
        "min": min(values) if values else 0.0,
        "max": max(values) if values else 0.0,
        "rounds": values,
    }
    if seconds is not None:
        result["seconds"] = [float(s) for s in seconds]
    if extra:
        result["extra"] = extra
    return result


def throughput(label: str, count: int, seconds: Sequence[float], **extra: Any) -> dict[str, Any]:
    return variant(label, [count / s for s in seconds], "msg/s", seconds=seconds, **extra)


def ratios(variants: dict[str, dict[str, Any]],
           wanted: Sequence[tuple[str, str, float | None, str]]) -> dict[str, Any]:
    """The ratios whose two variants both ran: {"a/b": ratio(...)}."""
    return {f"{a}/{b}": ratio(variants, a, b, goal, note) for a, b, goal, note in wanted
            if a in variants and b in variants}


def ratio(variants: dict[str, dict[str, Any]], numerator: str, denominator: str,
          goal: float | None = None, note: str = "") -> dict[str, Any]:
    """numerator/denominator per round (same round, same broker), and the median of those."""
    top, bottom = variants[numerator]["rounds"], variants[denominator]["rounds"]
    per_round = [a / b if b else 0.0 for a, b in zip(top, bottom, strict=True)]
    median = statistics.median(per_round) if per_round else 0.0
    result: dict[str, Any] = {
        "numerator": numerator,
        "denominator": denominator,
        "median": median,
        "rounds": per_round,
        "goal": goal,
        "met": None if goal is None else median >= goal,
    }
    if note:
        result["note"] = note
    return result


def goal(what: str, value: float | None, target: float, unit: str, *,
         at_most: bool) -> dict[str, Any]:
    """A figure held to an absolute goal (README's goals for this machine): met when
    ``value <= target`` (``at_most``) or ``>= target``; None when nothing was measured."""
    met = None if value is None else (value <= target if at_most else value >= target)
    return {"what": what, "value": value, "goal": target, "unit": unit,
            "direction": "<=" if at_most else ">=", "met": met}


async def wait_until(done: Callable[[], bool], timeout: float, what: str,
                     interval: float = 0.001) -> None:
    """Poll ``done`` every millisecond; TimeoutError names what did not happen."""
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(interval)


def time_limit(count: int) -> float:
    """A generous bound for one variant run (a hang must fail, not block forever)."""
    return 60.0 + count / 200.0


# -- the machine ----------------------------------------------------------------------------


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def _nats_server_version() -> str | None:
    try:
        out = subprocess.run([find_nats_server(), "--version"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip() or None


def machine_info() -> dict[str, Any]:
    import sqlite3

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": _cpu_model(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "nats_server": _nats_server_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in (
            "pizza", "nats-py", "faststream", "pydantic", "sqlalchemy", "aiosqlite",
            "orjson", "httpx", "uvicorn", "fastapi")},
    }


@dataclass
class Settings:
    """How big one run is; ``quick`` shrinks N, never the number of rounds."""

    quick: bool = False
    n: int | None = None  # override the message count of publish/consume/handlers
    rounds: int | None = None
    only: tuple[str, ...] | None = None  # run just these variants (profiling)
    extra: dict[str, Any] = field(default_factory=dict)

    def select(self, variants: dict[str, Variant]) -> dict[str, Variant]:
        if self.only is None:
            return variants
        return {name: run for name, run in variants.items() if name in self.only}

    @property
    def round_count(self) -> int:
        return self.rounds if self.rounds is not None else 3

    def count(self, quick: int, full: int) -> int:
        if self.n is not None:
            return self.n
        return quick if self.quick else full

    def warmup(self, count: int) -> int:
        """A short untimed run of every variant first (imports, caches, connections)."""
        return min(count, 500) if self.n is None else min(count, 50)
