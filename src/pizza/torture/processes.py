"""The system under test, started as an operator would: `pizza up` or `pizza serve` children.

Every child runs in its own session (process group), so a kill -9 reaches the whole of it
and nothing outlives the suite: `Fleet.stop_all` runs on the way out of every scenario, and
an atexit hook kills whatever is left if the interpreter exits another way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pizza.cli_common import pizza_command
from pizza.eventing.transport.embedded import free_port

_LIVE: set[int] = set()  # process-group ids this interpreter started and has not reaped


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without its PIZZA_* settings, plus the scenario's own."""
    # The caller's PIZZA_* settings stay out, but for how `pizza up` runs: PIZZA_PROCESSES=1
    # runs every test (or scenario) against one process instead of one per service.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIZZA_") or k == "PIZZA_PROCESSES"}
    env.update({"PIZZA_HOME": str(home), "PIZZA_LOG_LEVEL": "WARNING", **extra})
    return env


def _kill_leftovers() -> None:
    for pgid in list(_LIVE):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


atexit.register(_kill_leftovers)


@dataclass
class PizzaProcess:
    """One `pizza ...` child on a fixed port (kept across restarts)."""

    label: str          # e.g. "orders#2" or "up"
    service: str        # the service it runs, or "all"
    args: list[str]
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    expected_up: bool = False  # the health watcher asks only processes meant to be up
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*pizza_command(), *self.args], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _LIVE.add(self.proc.pid)
        self.starts += 1

    async def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"{self.label} exited while starting:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/api/health")).status_code == 200:
                        self.expected_up = True
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.label} not healthy after {timeout:.0f}s:\n{self.tail()}")

    def kill9(self) -> None:
        """A crash: SIGKILL to the whole process group, no chance to clean up."""
        self.expected_up = False
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        _LIVE.discard(self.proc.pid)

    def stop(self, grace: float = 15.0) -> None:
        """Ctrl-C, as an operator stops it; SIGKILL if it does not end in time."""
        self.expected_up = False
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(OSError):  # children it may have left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        _LIVE.discard(self.proc.pid)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(line[:300] for line in text.splitlines()[-lines:])


@dataclass
class Fleet:
    """The processes of one system: which URL serves which service's routes."""

    processes: list[PizzaProcess] = field(default_factory=list)

    def of(self, service: str) -> list[PizzaProcess]:
        return [p for p in self.processes if p.service in (service, "all")]

    def url(self, service: str) -> str:
        return self.of(service)[0].url

    def order_urls(self) -> list[str]:
        return [p.url for p in self.of("orders")]

    async def stop_all(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes))


def monolith(work: Path, env: dict[str, str]) -> Fleet:
    """`pizza up --simulate`: every service in one process."""
    port = free_port()
    return Fleet([PizzaProcess("up", "all", ["up", "--simulate", "--port", str(port)], env,
                               port, work / "pizza-up.log")])


def distributed(work: Path, env: dict[str, str], layout: Sequence[tuple[str, int]]) -> Fleet:
    """`pizza serve SERVICE` per process, each on its own port, e.g. two orders processes."""
    fleet = Fleet()
    for service, count in layout:
        for index in range(1, count + 1):
            port = free_port()
            fleet.processes.append(PizzaProcess(
                f"{service}#{index}" if count > 1 else service, service,
                ["serve", service, "--port", str(port)], env, port,
                work / f"{service}-{index}.log"))
    return fleet


async def start_fleet(fleet: Fleet) -> None:
    """Consumers before producers: a queue created later would miss what orders published."""
    first = [p for p in fleet.processes if p.service != "orders"]
    then = [p for p in fleet.processes if p.service == "orders"]
    for group in (first, then):
        for process in group:
            process.start()
        await asyncio.gather(*(p.wait_healthy() for p in group))
