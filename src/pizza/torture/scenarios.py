"""The scenarios: the real system under concurrency, crashes, outages and hostile input.

Each owns its state: a nats-server of its own (free port, store in a temporary directory),
its own PostgreSQL (a cluster it starts and stops, or a database with a unique name on the
machine's server, dropped afterwards), its own PIZZA_HOME and ports. Whatever happens,
including Ctrl-C, its processes are stopped and its directory removed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pizza.eventing import settings
from pizza.eventing.transport import credentials
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.torture import audit, hostile
from pizza.torture.customers import Customers, Load
from pizza.torture.health import watching
from pizza.torture.infrastructure import (
    PostgresCluster,
    SharedDatabase,
    shared_postgres_answers,
)
from pizza.torture.ledger import Ledger
from pizza.torture.nats_cluster import NatsCluster
from pizza.torture.processes import (
    Fleet,
    distributed,
    environment,
    free_port,
    monolith,
    start_fleet,
)
from pizza.web.identity import LocalIssuer, local_issuer

SERVICES = ("orders", "kitchen", "delivery", "pickup", "loyalty", "notifications", "tracking")
WRITERS_LAYOUT = (("orders", 2), ("kitchen", 2), ("delivery", 1), ("pickup", 1),
                  ("loyalty", 1), ("notifications", 1), ("tracking", 1))
CLUSTER_LAYOUT = tuple((service, 1) for service in SERVICES)


@dataclass
class Size:
    """How hard a run pushes: the full run, or the short form for CI (`--quick`)."""

    orders: int
    quick: bool

    def pick(self, full: float, quick: float) -> float:
        return quick if self.quick else full


# `pizza up --processes` of the scenario being run: 1 (one process), 0 (one per service),
# None (pizza up's default).
UP_PROCESSES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "up_processes", default=None)


@dataclass
class Stage:
    """One scenario's system and what it owns."""

    work: Path
    broker: EmbeddedNats | NatsCluster
    fleet: Fleet
    database: PostgresCluster | SharedDatabase | None
    started: float = field(default_factory=time.monotonic)

    @property
    def issuer(self) -> LocalIssuer:
        """The system's own token issuer (its key under the home the processes share)."""
        return local_issuer(self.work / "home")

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue('operator', ttl=24 * 3600)}"}

    @property
    def urls(self) -> dict[str, str]:
        return {name: self.fleet.url(name) for name in SERVICES}

    def at(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"


@contextlib.asynccontextmanager
async def stage(name: str, *, layout: tuple[tuple[str, int], ...] | None,
                database: str | None, keep: bool = False,
                cluster: bool = False) -> AsyncIterator[Stage]:
    """Start a system of the scenario's own; stop it and remove its state afterwards.

    ``layout`` None runs `pizza up --simulate`; else `pizza serve` processes as laid out.
    ``database``: None (SQLite), "own" (a cluster of our own) or "shared" (a fresh
    database on the machine's server when it answers, else a cluster of our own).
    ``cluster``: the broker is a 3-node NATS cluster admitting each service as its own
    user (``broker_users``), streams on 3 replicas, each process on its service's seed.
    """
    work = Path(tempfile.mkdtemp(prefix=f"pizza-torture-{name}-"))
    async with contextlib.AsyncExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, work, True)
        seeds: dict[str, Path] = {}
        broker: EmbeddedNats | NatsCluster
        if cluster:
            from pizza.app import load
            from pizza.eventing.transport.permissions import broker_users

            users = broker_users(load(), settings.credentials_dir(work / "home"))
            seeds = users.seeds
            operator = credentials.load(seeds[credentials.OPERATOR])
            broker = NatsCluster(work / "nats", authorization=users.config,
                                 credentials=operator)
            audit.CREDENTIALS[broker.url] = operator
            stack.callback(audit.CREDENTIALS.pop, broker.url, None)
        else:
            broker = EmbeddedNats(work / "nats")
        stack.push_async_callback(broker.stop)
        await broker.start()
        extra = {"PIZZA_NATS_URL": broker.url, "PIZZA_SIMULATE": "1", "PIZZA_SMTP_SINK": "1",
                 "PIZZA_SMTP_PORT": str(free_port())}
        if UP_PROCESSES.get() is not None:
            extra["PIZZA_PROCESSES"] = str(UP_PROCESSES.get())
        if isinstance(broker, NatsCluster):
            extra["PIZZA_NATS_REPLICAS"] = str(len(broker.nodes))
        db: PostgresCluster | SharedDatabase | None = None
        if database == "shared" and await shared_postgres_answers():
            db = SharedDatabase()
        elif database is not None:
            db = PostgresCluster(work / "postgres")
        if db is not None:
            stack.push_async_callback(db.destroy)
            await db.create()
            extra["PIZZA_DATABASE_URL"] = db.url
        env = environment(work / "home", **extra)
        fleet = (monolith(work, env) if layout is None
                 else distributed(work, env, layout))
        for process in fleet.processes:  # each on its own service's credentials
            if process.service in seeds:
                process.env = {**process.env, "PIZZA_NATS_CREDS": str(seeds[process.service])}
        stack.push_async_callback(fleet.stop_all)
        await start_fleet(fleet)
        yield Stage(work, broker, fleet, db)


Disturbance = Callable[[Stage, Ledger, float], Awaitable[None]]


async def exercise(stage: Stage, ledger: Ledger, size: Size, *, seconds: float | None,
                   patience: float, disturb: Disturbance | None = None,
                   hostility: hostile.Hostility | None = None, hostile_count: int = 0) -> None:
    """Place the orders (over ``seconds``, or as fast as 32 customers can), disturb the
    system meanwhile, wait for everything to settle, and write the ledger. What was seen
    stays in the ledger even if a step fails on the way."""
    run = uuid.uuid4().hex[:6]
    customers = Customers(stage.fleet.order_urls(), stage.fleet.url("delivery"), run,
                          patience=patience, issuer=stage.issuer)
    load: Load = customers.load
    rate = size.orders / seconds if seconds else None
    ledger.offered = size.orders
    async with watching(stage.fleet) as watch:
        try:
            work: list[Awaitable[Any]] = [customers.place_all(size.orders, rate)]
            if disturb is not None:
                work.append(disturb(stage, ledger, seconds or 30.0))
            if hostility is not None:
                found = await hostile.targets(stage.broker.url, stage.fleet.url("orders"))
                made = hostile.messages(found, hostile_count)
                ledger.events.append(f"{stage.at()} {len(made)} hostile messages on "
                                     f"{len(found)} subjects")
                work.append(hostile.send(stage.broker.url, made, seconds or 30.0, hostility))
            async with asyncio.TaskGroup() as group:  # one failing cancels the others
                for job in work:
                    group.create_task(_awaited(job))
            ledger.events.append(f"{stage.at()} load done: {len(load.placed)} accepted")
            last = max((p.accepted_at for p in load.placed), default=time.monotonic())
            expected = hostility.expected if hostility else 0

            async def hostile_letters_in() -> bool:
                return await audit.dead_letter_count(stage.broker.url) >= expected

            took = await audit.settle(stage.urls, stage.operator, load.placed,
                                      size.pick(300, 60),
                                      hostile_letters_in if hostility else None)
            ledger.settle_seconds = None if took is None else time.monotonic() - last
        finally:
            ledger.accepted = len(load.placed)
            ledger.refused = load.refused
            ledger.retries = load.retries
            ledger.health_slowest, ledger.health_slowest_at = watch.slowest, watch.slowest_at
            ledger.health_failures = watch.failures
            ledger.health_last_failure = watch.last_failure
            ledger.health_degraded = watch.degraded
            if hostility is not None:
                ledger.hostile_sent = hostility.sent
                ledger.hostile_expected = hostility.expected
    await asyncio.sleep(size.pick(2.0, 1.0))  # a late duplicate has a moment to show itself
    await audit.account(ledger, stage.urls, stage.operator, stage.broker.url, load.placed,
                        hostility.fingerprints if hostility else set())


def _head_and_tail(text: str, tail: int = 1200) -> str:
    """A failure's first line (what failed) and its end (why: the last log lines)."""
    if len(text) <= tail + 300:
        return text
    return f"{text.splitlines()[0][:300]}\n...\n{text[-tail:]}"


async def _awaited(job: Awaitable[Any]) -> Any:
    return await job


# -- the scenarios ------------------------------------------------------------------------


async def writers(ledger: Ledger, size: Size, keep: bool) -> None:
    """Distributed mode on PostgreSQL, two orders and two kitchen processes, 32 clients."""
    async with stage("writers", layout=WRITERS_LAYOUT, database="shared", keep=keep) as s:
        ledger.events.append(f"{s.at()} {len(s.fleet.processes)} processes up")
        await exercise(s, ledger, size, seconds=None, patience=30)


async def kill(ledger: Ledger, size: Size, keep: bool) -> None:
    """kill -9 of random service processes (every service, orders included), restarted."""
    kills = int(size.pick(10, 4))
    chooser = random.Random()
    async with stage("kill", layout=WRITERS_LAYOUT, database="shared", keep=keep) as s:
        async def crash(s: Stage, ledger: Ledger, seconds: float) -> None:
            order = list(SERVICES)
            chooser.shuffle(order)
            if "orders" not in order[:kills]:
                order[kills - 1] = "orders"
            victims = order[:kills] + [chooser.choice(SERVICES)
                                       for _ in range(kills - len(order))]
            begin = time.monotonic()
            for number, service in enumerate(victims):
                due = begin + seconds * (0.1 + 0.75 * number / max(1, kills - 1))
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                victim = chooser.choice(s.fleet.of(service))
                victim.kill9()
                ledger.events.append(f"{s.at()} kill -9 {victim.label}")
                await asyncio.sleep(chooser.uniform(0.5, size.pick(2.0, 1.0)))
                victim.start()
                await victim.wait_healthy()
                ledger.events.append(f"{s.at()} {victim.label} restarted and healthy")

        await exercise(s, ledger, size, seconds=size.pick(100, 24), patience=60,
                       disturb=crash)


def _outage(name: str, stop: Callable[[Stage], Awaitable[None]],
            start: Callable[[Stage], Awaitable[None]], down: float) -> Disturbance:
    async def outage(s: Stage, ledger: Ledger, seconds: float) -> None:
        await asyncio.sleep(seconds * 0.25)
        await stop(s)
        ledger.events.append(f"{s.at()} {name} stopped")
        await asyncio.sleep(down)
        await start(s)
        ledger.events.append(f"{s.at()} {name} back after {down:.0f}s")

    return outage


async def broker(ledger: Ledger, size: Size, keep: bool) -> None:
    """The broker stopped during load, restarted on the same port and store."""
    down = size.pick(30, 6)

    async def stop(s: Stage) -> None:
        await s.broker.stop()

    async def start(s: Stage) -> None:
        await s.broker.start()

    async with stage("broker", layout=None, database=None, keep=keep) as s:
        await exercise(s, ledger, size, seconds=size.pick(90, 18), patience=down + 60,
                       disturb=_outage("nats-server", stop, start, down))


async def database(ledger: Ledger, size: Size, keep: bool) -> None:
    """The scenario's own PostgreSQL cluster stopped during load, then started again."""
    down = size.pick(15, 5)

    async def stop(s: Stage) -> None:
        assert isinstance(s.database, PostgresCluster)
        await s.database.stop()

    async def start(s: Stage) -> None:
        assert isinstance(s.database, PostgresCluster)
        await s.database.start()

    async with stage("database", layout=None, database="own", keep=keep) as s:
        await exercise(s, ledger, size, seconds=size.pick(90, 18), patience=down + 60,
                       disturb=_outage("PostgreSQL", stop, start, down))


async def hostile_input(ledger: Ledger, size: Size, keep: bool) -> None:
    """Hostile messages on every consumed subject while real orders flow."""
    async with stage("hostile", layout=None, database=None, keep=keep) as s:
        await exercise(s, ledger, size, seconds=size.pick(90, 18), patience=30,
                       hostility=hostile.Hostility(), hostile_count=int(size.pick(1000, 200)))


async def nats_cluster(ledger: Ledger, size: Size, keep: bool) -> None:
    """A 3-node NATS cluster, streams on 3 replicas, a `pizza serve` per service on its own
    credentials (SQLite); during load, kill -9 of a node that leads no PIZZA_EVENTS, then
    of the node that leads it, each restarted on its store after a while."""
    down = size.pick(10, 3)
    async with stage("cluster", layout=CLUSTER_LAYOUT, database=None, keep=keep,
                     cluster=True) as s:
        nodes = s.broker
        assert isinstance(nodes, NatsCluster)
        ledger.events.append(f"{s.at()} {len(s.fleet.processes)} processes up on "
                             f"{len(nodes.nodes)} nodes; PIZZA_EVENTS on "
                             f"{await nodes.replicas('PIZZA_EVENTS')} of them")

        async def crash(s: Stage, ledger: Ledger, seconds: float) -> None:
            begin = time.monotonic()
            for share, whom in ((0.15, "a follower"), (0.5, "the leader")):
                await asyncio.sleep(max(0.0, begin + seconds * share - time.monotonic()))
                leader = await nodes.leader("PIZZA_EVENTS")
                victim = (leader if whom == "the leader"
                          else next(name for name in nodes.nodes if name != leader))
                await nodes.kill(victim)
                ledger.events.append(f"{s.at()} kill -9 nats-server {victim} ({whom} of "
                                     "PIZZA_EVENTS)")
                await asyncio.sleep(down)
                await nodes.restart(victim)
                took = await nodes.wait_current("PIZZA_EVENTS")
                ledger.events.append(
                    f"{s.at()} {victim} restarted; PIZZA_EVENTS current on every node "
                    f"{took:.1f}s later, led by {await nodes.leader('PIZZA_EVENTS')}")

        await exercise(s, ledger, size, seconds=size.pick(100, 24), patience=60,
                       disturb=crash)


SCENARIOS: dict[str, Callable[[Ledger, Size, bool], Awaitable[None]]] = {
    "writers": writers, "kill": kill, "broker": broker, "database": database,
    "hostile": hostile_input, "cluster": nats_cluster,
}
NEEDS_OWN_POSTGRES = ("database",)
NEEDS_POSTGRES = ("writers", "kill", "database")
QUICK_ORDERS = 120
FULL_ORDERS = 2000


async def run_scenario(name: str, *, orders: int | None = None, quick: bool = False,
                       keep: bool = False, processes: int | None = None) -> Ledger:
    """Run one scenario; its ledger, with ``error`` set if it could not finish.
    ``processes`` is `pizza up --processes` where a scenario runs `pizza up` (None: its
    default)."""
    ledger = Ledger(name)
    UP_PROCESSES.set(processes)
    size = Size(orders or (QUICK_ORDERS if quick else FULL_ORDERS), quick)
    started = time.monotonic()
    try:
        await SCENARIOS[name](ledger, size, keep)
    except Exception as error:  # the ledger says what broke; the next scenario still runs
        while isinstance(error, ExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        ledger.error = f"{type(error).__name__}: {_head_and_tail(str(error))}"
    finally:
        ledger.seconds = time.monotonic() - started
    return ledger
