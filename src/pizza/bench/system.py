"""Scenarios ``e2e`` and ``api``: the whole system, ``pizza up --simulate``, over HTTP.

Each scenario starts the system as a subprocess with a temp PIZZA_HOME (so its own
embedded nats-server and SQLite files) on a free port, a process per service as
``pizza up`` runs by default (``running_system(processes=1)``: all in one), waits for
``/api/health``, and stops it with SIGINT afterwards. If it cannot start, the scenario reports
``skipped: <reason>`` instead of failing the whole run.

e2e: orders placed through ``pizza.loadgen.run_load`` at fixed offered rates, each followed
     over SSE to ``completed``; completed orders/s and latency percentiles. The rates
     alternate within each round; the system settles (empty outboxes and queues) between
     runs. Full mode also searches the highest rate still completing >= 90% of what is
     offered with p95 < 5 s. Goal: p99 from the 202 to ``completed`` <= 1 s at 100
     orders/s offered.
api: ``POST /api/orders`` with C concurrent httpx clients for a few seconds: requests/s
     and latency percentiles, concurrency levels alternating. Goal: p50 <= 5 ms at one
     client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pizza.bench.common import Settings, goal, rotation, variant
from pizza.cli_common import pizza_command
from pizza.eventing.transport.embedded import free_port
from pizza.web.identity import issue_token

START_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0


class Skip(Exception):
    """The system cannot run yet: the scenario is skipped, with this reason."""


@dataclass
class RunningSystem:
    base_url: str
    process: asyncio.subprocess.Process
    log: Path
    headers: dict[str, str]  # signed in as the operator, who may order for anyone
    home: Path
    processes: int  # 0: a process per service (pizza up's default); 1: one process

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.asynccontextmanager
async def running_system(prefix: str, processes: int = 0) -> AsyncIterator[RunningSystem]:
    with tempfile.TemporaryDirectory(prefix=f"pizza-bench-{prefix}-") as tmp:
        home = Path(tmp)
        port = free_port()
        env = dict(os.environ, PIZZA_HOME=str(home), PIZZA_LOG_LEVEL="WARNING")
        for name in ("PIZZA_NATS_URL", "PIZZA_DATABASE_URL", "PIZZA_REDIS_URL"):
            env.pop(name, None)
        log = home / "system.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                *pizza_command(), "up", "--simulate", "--port", str(port),
                "--processes", str(processes),
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
                cwd=str(home), start_new_session=True)
        operator = issue_token("operator", home=home, ttl=24 * 3600)
        system = RunningSystem(f"http://127.0.0.1:{port}", process, log,
                               {"Authorization": f"Bearer {operator}"}, home, processes)
        try:
            await _wait_healthy(system)
            yield system
        finally:
            await _stop(process)


async def _wait_healthy(system: RunningSystem) -> None:
    deadline = time.perf_counter() + START_TIMEOUT
    last = ""
    async with httpx.AsyncClient(base_url=system.base_url, timeout=2) as client:
        while time.perf_counter() < deadline:
            if system.process.returncode is not None:
                raise Skip(f"`pizza up --simulate` exited with {system.process.returncode}: "
                           f"{system.log_tail(8)}")
            try:
                response = await client.get("/api/health")
                if response.status_code == 200 and response.json().get("status") == "ok":
                    return
                last = f"/api/health answered {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            await asyncio.sleep(0.2)
    raise Skip(f"the system was not healthy after {START_TIMEOUT:.0f}s ({last}); "
               f"{system.log_tail(8)}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def settle(base_url: str, timeout: float = SETTLE_TIMEOUT) -> dict[str, Any]:
    """Wait until every outbox is empty and no queue has anything waiting or in flight."""
    began = time.perf_counter()
    settled = await _settle(base_url, timeout)
    return {"settled": settled, "settle_s": round(time.perf_counter() - began, 2)}


def busy(report: dict[str, Any]) -> int:
    """Outbox rows and queued or in-flight messages in a health report (0: settled).
    A number health could not get in time (null) is not a zero."""
    total = 0
    for service in report.get("services", {}).values():
        counts = [service.get("outboxBacklog")]
        for queue in service.get("queues", {}).values():
            counts += [queue.get("waiting"), queue.get("inFlight")]
        total += sum(1 if count is None else count for count in counts)
    return total


async def _settle(base_url: str, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if not busy((await client.get("/api/health")).json()):
                    return True
            await asyncio.sleep(0.2)
    return False


def loop_lags(report: dict[str, Any]) -> dict[str, float | None]:
    """Each process's event-loop lag (ms, the largest of the last minute) from a health
    report: per service process under the gateway, else the one process's ("pizza up")."""
    processes = report.get("processes")
    if isinstance(processes, dict) and processes:
        return {name: (None if one.get("loopLagMs") is None else float(one["loopLagMs"]))
                for name, one in processes.items()}
    lag = report.get("loopLagMs")
    return {"pizza up": None if lag is None else float(lag)}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- e2e ------------------------------------------------------------------------------------


async def _one_load(base_url: str, rate: float, seconds: float,
                    headers: dict[str, str]) -> dict[str, Any]:
    from pizza.loadgen import run_load

    orders = max(1, int(rate * seconds))
    result = await run_load(base_url, orders=orders, rate=rate, follow_seconds=30.0,
                            headers=headers)
    lags = await _loop_lag_ms(base_url)
    present = [lag for lag in lags.values() if lag is not None]
    completed = result.percentiles("completed")
    accept = sorted(t.request_seconds for t in result.traces if t.order_id)
    return {
        "offered_rate": rate,
        "orders": orders,
        "accepted": result.accepted,
        "completed": result.completed,
        "errors": len(result.errors),
        "first_error": result.errors[0] if result.errors else None,
        "completed_per_s": result.completed_per_second(),
        "completed_p50_s": completed["p50"],
        "completed_p95_s": completed["p95"],
        "completed_p99_s": completed["p99"],
        "post_p50_s": _percentile(accept, 0.5),
        "post_p95_s": _percentile(accept, 0.95),
        "wall_s": result.wall_seconds,
        "loop_lag_ms": max(present) if present else None,
        "loop_lag_ms_by_process": lags,
    }


async def _loop_lag_ms(base_url: str) -> dict[str, float | None]:
    """The largest recent lag of each process's event loop, as /api/health reports it."""
    with contextlib.suppress(Exception):
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
            return loop_lags((await client.get("/api/health")).json())
    return {}


GOAL_RATE = 100.0  # orders/s offered at which p99 202-to-completed is held to its goal
GOAL_P99_S = 1.0
GOAL_POST_P50_MS = 5.0  # POST /api/orders at one client


async def e2e(settings: Settings) -> dict[str, Any]:
    rates = [GOAL_RATE, 200.0] if settings.quick else [50.0, GOAL_RATE, 200.0]
    seconds = settings.extra.get("e2e_seconds", 2.0 if settings.quick else 5.0)
    rounds = settings.round_count
    runs: dict[float, list[dict[str, Any]]] = {rate: [] for rate in rates}
    search: list[dict[str, Any]] = []
    async with running_system("e2e") as system:
        for index in range(rounds):
            for rate in rotation(rates, index):
                run = await _one_load(system.base_url, rate, seconds, system.headers)
                run.update(await settle(system.base_url))
                runs[rate].append(run)
        if not settings.quick:
            rate = rates[-1] * 2
            for _ in range(5):
                run = await _one_load(system.base_url, rate, seconds, system.headers)
                run.update(await settle(system.base_url))
                search.append(run)
                p95 = run["completed_p95_s"]
                if (run["errors"] or run["completed_per_s"] < 0.9 * rate
                        or p95 is None or p95 > 5.0):
                    break
                rate *= 2
    variants = {}
    for rate in rates:
        results = runs[rate]
        variants[f"{rate:g}/s"] = variant(
            f"offered {rate:g} orders/s", [r["completed_per_s"] for r in results],
            "orders/s",
            completed=f"{sum(r['completed'] for r in results)}/"
                      f"{sum(r['orders'] for r in results)}",
            errors=sum(r["errors"] for r in results),
            p50_s=_median([r["completed_p50_s"] for r in results]),
            p95_s=_median([r["completed_p95_s"] for r in results]),
            p99_s=_median([r["completed_p99_s"] for r in results]),
            post_p95_s=_median([r["post_p95_s"] for r in results]),
            settled=all(r["settled"] for r in results),
            loop_lag_ms=max((r["loop_lag_ms"] for r in results
                             if r["loop_lag_ms"] is not None), default=None),
        )
    goals = {}
    if f"{GOAL_RATE:g}/s" in variants:
        p99 = variants[f"{GOAL_RATE:g}/s"]["extra"]["p99_s"]
        goals["p99_s_at_100"] = goal(
            f"p99 202 to completed at {GOAL_RATE:g} orders/s offered", p99, GOAL_P99_S,
            "s", at_most=True)
    sustained = [r for r in search if not r["errors"]
                 and r["completed_per_s"] >= 0.9 * r["offered_rate"]
                 and (r["completed_p95_s"] or 1e9) <= 5.0]
    return {
        "status": "ok",
        "rounds": rounds,
        "seconds_per_run": seconds,
        "variants": variants,
        "ratios": {},
        "goals": goals,
        "runs": {f"{rate:g}": runs[rate] for rate in rates},
        "max_search": {"runs": search,
                       "max_sustained_rate": max((r["offered_rate"] for r in sustained),
                                                 default=None)} if search else None,
        "notes": ["latency from the 202 of POST /api/orders to 'completed' seen on the SSE "
                  "stream (orders followed for at most 30 s); the system settles (empty "
                  f"outboxes and queues, at most {SETTLE_TIMEOUT:.0f} s) between runs",
                  "loop_lag_ms: the largest delay of any of the system's event loops (a "
                  "0.1 s timer's overshoot) over the run, from /api/health (each "
                  "process's in runs[*].loop_lag_ms_by_process)"],
    }


# -- api ------------------------------------------------------------------------------------


def _order_body() -> dict[str, Any]:
    customer = f"bench-{uuid.uuid4().hex[:8]}"
    return {"customerId": customer, "email": f"{customer}@example.com",
            "items": [{"menuItemId": "margherita", "quantity": 1}], "fulfilment": "pickup"}


async def _hammer(base_url: str, clients: int, seconds: float,
                  headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    began = time.perf_counter()
    stop_at = began + seconds

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                try:
                    response = await client.post("/api/orders", json=_order_body())
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors.append(f"{response.status_code}: {response.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": (_percentile(latencies, 0.50) or 0) * 1000,
        "p95_ms": (_percentile(latencies, 0.95) or 0) * 1000,
        "p99_ms": (_percentile(latencies, 0.99) or 0) * 1000,
    }


async def api(settings: Settings) -> dict[str, Any]:
    levels = [1, 16] if settings.quick else [1, 16, 64]
    seconds = settings.extra.get("api_seconds", 3.0 if settings.quick else 10.0)
    rounds = settings.round_count
    runs: dict[int, list[dict[str, Any]]] = {level: [] for level in levels}
    async with running_system("api") as system:
        async with httpx.AsyncClient(base_url=system.base_url,
                                     headers=system.headers) as client:  # warm up
            for _ in range(20):
                await client.post("/api/orders", json=_order_body())
        await settle(system.base_url)
        for index in range(rounds):
            for level in rotation(levels, index):
                run = await _hammer(system.base_url, level, seconds, system.headers)
                run.update(await settle(system.base_url))
                runs[level].append(run)
    variants = {
        f"c={level}": variant(
            f"{level} concurrent client(s)", [r["requests_per_s"] for r in runs[level]],
            "req/s",
            errors=sum(r["errors"] for r in runs[level]),
            p50_ms=_median([r["p50_ms"] for r in runs[level]]),
            p95_ms=_median([r["p95_ms"] for r in runs[level]]),
            p99_ms=_median([r["p99_ms"] for r in runs[level]]),
        )
        for level in levels
    }
    goals = {}
    if "c=1" in variants:
        goals["post_p50_ms_1_client"] = goal(
            "POST /api/orders p50 at 1 client", variants["c=1"]["extra"]["p50_ms"],
            GOAL_POST_P50_MS, "ms", at_most=True)
    return {
        "status": "ok",
        "rounds": rounds,
        "seconds_per_run": seconds,
        "variants": variants,
        "ratios": {},
        "goals": goals,
        "runs": {str(level): runs[level] for level in levels},
        "notes": ["POST /api/orders (pickup, 1 margherita), one httpx client per concurrent "
                  "caller; background processing settles between runs"],
    }
