"""Scenario ``orders``: what a completed order costs the whole system, and how many it
completes a second, at one process, two, and a process per service, beside the floor.

Each round starts, in turn (the first rotates), ``pizza up --simulate`` (a process per
service behind the gateway: ``all``), ``pizza up --simulate --processes 2`` (the services
spread over two: ``two``) and ``pizza up --simulate --processes 1`` (``one``),
each with a temp PIZZA_HOME (``system.running_system``), warms it (20 orders, settled),
and then:

1. **The story of one order** (first round): one delivery order, then one pickup order,
   each placed alone and let settle; what the system did for each: messages its outboxes
   published (``pizza_outbox_published``), messages its queues handled
   (``pizza_queue_handled``, from ``/metrics``) and write transactions committed to its
   SQLite files (``processes.sqlite_commits``: SQLite's own commit counter).
2. **N orders** (every other one for delivery) from 16 HTTP callers
   (``loadgen.run_clients``), each placing its next as soon as the last was accepted.
   The CPU time (user + sys) of the whole process tree, per process, from /proc: the
   supervisor (the gateway, the SMTP sink, the loyalty SaaS; in ``one``, everything),
   each ``pizza serve SERVICE`` child and the nats-server; read before the first POST
   and once the tracking service has seen N orders completed and every queue and
   outbox is empty (so the points and emails an order causes after ``completed`` are
   in). CPU per completed order = that / the orders the read model shows completed.
   Throughput = N / (first POST to the N-th OrderCompleted handled by tracking, seen in
   ``/api/health`` every 0.2 s once all are placed). Then each process's event-loop lag.

Then, in the same round, **the floor**: raw nats-py and the stdlib's sqlite3 doing the
broker and database work of the same N orders by the story's counts: per order, publish
its messages (~420-byte envelopes with ``Nats-Msg-Id``, ``publish_async``, acks awaited),
fetch and ack as many deliveries (pull consumers with a fan-out that delivers each
message as often as the story's average) and commit as many transactions (one INSERT
each; WAL, synchronous=NORMAL, as the kernel), 16 orders at a time, against a nats-server
of its own. No decoding, no validation, no HTTP: the least that moving the same messages
and committing the same number of transactions costs. Its CPU: this process (time.process_time)
plus its nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from prometheus_client.parser import text_string_to_metric_families

from pizza.bench import processes
from pizza.bench.common import (
    Settings,
    goal,
    make_message,
    private_broker,
    ratios,
    rotation,
    variant,
)
from pizza.bench.system import RunningSystem, Skip, busy, loop_lags, running_system
from pizza.loadgen import ClientsResult, register_customers, run_clients

CLIENTS = 16
WARMUP_ORDERS = 20
ORDERS_PER_CUSTOMER = 40  # a customer's list (GET /api/orders) shows the newest 50
POLL_SECONDS = 0.2
IDLE_SECONDS = 3.0  # the system at rest, before the orders: its idle CPU
FLOOR_CHUNK = 16  # orders whose work the floor does at a time (the 16 callers)
COMPLETED_QUEUE = ("tracking", "order-completed")
GOAL_CPU_MS = 5.0  # CPU-ms per completed order, at most
GOAL_THROUGHPUT = 250.0  # completed orders/s sustained, at least
MODES = {"all": 0, "two": 2, "one": 1}  # pizza up --processes: how it scales with cores
MODE_LABELS = {"all": "a process per service (pizza up)",
               "two": "two processes (pizza up --processes 2)",
               "one": "one process (pizza up --processes 1)"}


@dataclass
class Story:
    """What the system did for one order."""

    published: int  # messages the outboxes published
    consumed: int  # messages the queues handled
    commits: int  # write transactions committed, every database
    commits_by_database: dict[str, int]


# -- reading the running system -------------------------------------------------------------


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/api/health", timeout=10)
    document = answer.json()
    return document if isinstance(document, dict) else {}


def _completed(report: dict[str, Any]) -> int | None:
    service, queue = COMPLETED_QUEUE
    handled = (report.get("services", {}).get(service, {}).get("queues", {})
               .get(queue, {}).get("handled"))
    return int(handled) if handled is not None else None


async def _counters(client: httpx.AsyncClient) -> tuple[int, int]:
    """(messages published by every outbox, messages handled by every queue) so far."""
    answer = await client.get("/metrics", timeout=10)
    answer.raise_for_status()
    sums = {"pizza_outbox_published": 0.0, "pizza_queue_handled": 0.0}
    for family in text_string_to_metric_families(answer.text):
        if family.name in sums:
            sums[family.name] += sum(s.value for s in family.samples
                                     if s.name.endswith("_total"))
    return int(sums["pizza_outbox_published"]), int(sums["pizza_queue_handled"])


async def _wait(system: RunningSystem, client: httpx.AsyncClient,
                completed_at_least: int | None, timeout: float,
                on_seen: Callable[[], None] | None = None,
                ) -> tuple[dict[str, Any], float | None]:
    """Poll /api/health until tracking has handled ``completed_at_least`` OrderCompleted
    (when given) and the system is quiet: nothing queued or in an outbox, and no database
    committed anything since the last poll (background loops, such as the email sender,
    work from tables). Returns the last report and the perf_counter time the completions
    were first seen (None: not within ``timeout``); ``on_seen`` is called then."""
    deadline = time.perf_counter() + timeout
    seen_at: float | None = None
    report: dict[str, Any] = {}
    commits: dict[str, int] | None = None
    while time.perf_counter() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            report = await _health(client)
            completed = _completed(report)
            if seen_at is None and (completed_at_least is None or (
                    completed is not None and completed >= completed_at_least)):
                seen_at = time.perf_counter()
                if on_seen is not None:
                    on_seen()
            now = processes.sqlite_commits(system.home)
            if seen_at is not None and not busy(report) and now == commits:
                return report, seen_at
            commits = now
        await asyncio.sleep(POLL_SECONDS)
    return report, seen_at


async def _count_completed(client: httpx.AsyncClient, placed: ClientsResult) -> int:
    """How many of the placed orders the read model shows completed (one list a customer)."""
    ours = {p.order_id for p in placed.accepted}
    customers = sorted({p.customer for p in placed.accepted})
    limit = asyncio.Semaphore(CLIENTS)

    async def completed_of(customer: str) -> int:
        async with limit:
            answer = await client.get("/api/orders", params={"customerId": customer})
            if answer.status_code != 200:
                return 0
            return sum(1 for view in answer.json()
                       if view.get("orderId") in ours and view.get("status") == "completed")

    return sum(await asyncio.gather(*(completed_of(c) for c in customers)))


async def _story(system: RunningSystem, client: httpx.AsyncClient, pickup: bool) -> Story:
    """Place one order alone and count what the system did for it."""
    customers = await register_customers(system.base_url, 1, system.headers)
    await _wait(system, client, None, 60)
    completed = _completed(await _health(client)) or 0
    published, consumed = await _counters(client)
    commits = processes.sqlite_commits(system.home)
    placed = await run_clients(system.base_url, orders=1, clients=1, customers=customers,
                               first_pickup=pickup, headers=system.headers)
    if not placed.accepted:
        raise RuntimeError(f"the story's order was refused: {placed.errors[:1]}")
    _report, seen = await _wait(system, client, completed + 1, 60)
    if seen is None:
        raise RuntimeError("the story's order did not complete within 60 s")
    published_after, consumed_after = await _counters(client)
    commits_after = processes.sqlite_commits(system.home)
    by_database = {name: commits_after[name] - commits.get(name, 0) for name in commits_after
                   if commits_after[name] != commits.get(name, 0)}
    return Story(published_after - published, consumed_after - consumed,
                 sum(by_database.values()), by_database)


async def _load(system: RunningSystem, client: httpx.AsyncClient,
                orders: int) -> dict[str, Any]:
    """N orders from 16 callers: CPU per completed order, split by process; throughput."""
    customers = await register_customers(
        system.base_url, math.ceil(orders / ORDERS_PER_CUSTOMER), system.headers)
    await _wait(system, client, None, 60)
    root = system.process.pid
    root_label = "pizza up" if system.processes == 1 else "supervisor"
    idle_before = processes.tree_cpu(root, root_label)
    await asyncio.sleep(IDLE_SECONDS)  # what the system spends doing nothing
    idle = processes.spent(idle_before, processes.tree_cpu(root, root_label))
    completed_before = _completed(await _health(client))
    cpu_before = processes.tree_cpu(root, root_label)
    began = time.perf_counter()
    placed = await run_clients(system.base_url, orders=orders, clients=CLIENTS,
                               customers=customers, headers=system.headers)
    accepted = len(placed.accepted)
    target = None if completed_before is None else completed_before + accepted
    at_completed: list[dict[int, processes.Reading]] = []
    report, seen = await _wait(
        system, client, target, 60.0 + orders / 20.0,
        on_seen=lambda: at_completed.append(processes.tree_cpu(root, root_label)))
    ended = time.perf_counter()
    cpu_after = processes.tree_cpu(root, root_label)
    spent = processes.spent(cpu_before, cpu_after)
    completed = await _count_completed(client, placed)
    lags = loop_lags(await _health(client))
    total = sum(spent.values())
    per_order = 1000.0 * total / completed if completed else None
    elapsed = (seen if seen is not None else ended) - began
    return {
        "orders": orders,
        "accepted": accepted,
        "completed": completed,
        "errors": len(placed.errors),
        "first_error": placed.errors[0] if placed.errors else None,
        "cpu_s": total,
        "cpu_s_by_process": spent,
        "cpu_ms_per_order": per_order,
        # until the N-th completion only: the rest is the work after `completed` (emails,
        # points) and the system's idle loops while that goes on
        "cpu_ms_per_order_to_completed": 1000.0 * sum(processes.spent(
            cpu_before, at_completed[0]).values()) / completed
        if completed and at_completed else None,
        "cpu_ms_per_order_by_process": {
            name: 1000.0 * seconds / completed for name, seconds in spent.items()
        } if completed else {},
        "idle_cpu_ms_per_s": {name: 1000.0 * seconds / IDLE_SECONDS
                              for name, seconds in idle.items()},
        "completed_per_s": completed / elapsed if completed and elapsed > 0 else 0.0,
        "first_post_to_last_completed_s": elapsed,
        "window_s": ended - began,
        "posting_s": placed.wall_seconds,
        "post_p50_ms": 1000.0 * (placed.request_percentile(0.5) or 0.0),
        "post_p99_ms": 1000.0 * (placed.request_percentile(0.99) or 0.0),
        "settled": not busy(report) if report else False,
        "loop_lag_ms_by_process": lags,
        "processes_seen": len(cpu_after),
    }


async def _system_run(mode: str, orders: int, want_story: bool) -> dict[str, Any]:
    async with running_system(f"orders-{mode}", processes=MODES[mode]) as system:
        async with httpx.AsyncClient(base_url=system.base_url, headers=system.headers,
                                     timeout=30) as client:
            warm = await register_customers(system.base_url, 4, system.headers)
            await run_clients(system.base_url, orders=WARMUP_ORDERS, clients=CLIENTS,
                              customers=warm, headers=system.headers)
            stories = {}
            if want_story:
                stories = {"delivery": await _story(system, client, pickup=False),
                           "pickup": await _story(system, client, pickup=True)}
            run = await _load(system, client, orders)
            if stories:
                run["story"] = {kind: asdict(story) for kind, story in stories.items()}
            return run


# -- the floor ------------------------------------------------------------------------------


FLOOR_STREAM = "BENCH_FLOOR"


def _fan_out(story: Story) -> list[int]:
    """How many consumers get each of the order's messages: the deliveries spread over
    the messages as evenly as whole numbers allow (the first ones get one more)."""
    if story.published <= 0:
        return []
    base, extra = divmod(max(0, story.consumed), story.published)
    return [base + 1 if index < extra else base for index in range(story.published)]


async def floor(stories: Sequence[Story], orders: int) -> dict[str, Any]:
    """Raw nats-py + sqlite3 doing the orders' broker and database work (module docstring):
    CPU seconds of this process and of its nats-server, and the wall time."""
    plans = [_fan_out(stories[index % len(stories)]) for index in range(orders)]
    commits = [stories[index % len(stories)].commits for index in range(orders)]
    consumers = max((max(plan, default=0) for plan in plans), default=0)
    # Every message made before timing: envelopes of the kernel's shape and size.
    messages = [[make_message(index) for _ in plan] for index, plan in enumerate(plans)]
    row = os.urandom(100).hex()
    async with private_broker("floor") as (home, _server):
        nc = await nats.connect(_server.url, name="bench-floor")
        js = nc.jetstream(publish_async_max_pending=8192)
        db = sqlite3.connect(home / "floor.db", isolation_level=None)
        try:
            await js.add_stream(StreamConfig(name=FLOOR_STREAM, subjects=["floor.>"],
                                             storage=StorageType.FILE))
            subscriptions = []
            for number in range(1, consumers + 1):  # consumer k takes fan-outs >= k
                durable = f"floor{number}"
                await js.add_consumer(FLOOR_STREAM, ConsumerConfig(
                    durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL, max_ack_pending=8192, ack_wait=60,
                    filter_subjects=[f"floor.{f}" for f in range(number, consumers + 1)]))
                subscriptions.append(await js.pull_subscribe_bind(durable=durable,
                                                                  stream=FLOOR_STREAM))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            broker_before = _broker_cpu()
            cpu_before = processes.self_cpu()
            began = time.perf_counter()
            published = delivered = committed = 0
            for start in range(0, orders, FLOOR_CHUNK):
                chunk = range(start, min(orders, start + FLOOR_CHUNK))
                acks = []
                for index in chunk:
                    for message, fan_out in zip(messages[index], plans[index], strict=True):
                        acks.append(await js.publish_async(
                            f"floor.{fan_out}", message.payload, headers=message.headers()))
                await asyncio.gather(*acks)
                published += len(acks)
                for number, subscription in enumerate(subscriptions, start=1):
                    due = sum(1 for index in chunk for f in plans[index] if f >= number)
                    while due > 0:
                        for msg in await subscription.fetch(min(due, 256), timeout=5):
                            await msg.ack()
                            due -= 1
                            delivered += 1
                for index in chunk:
                    for _ in range(commits[index]):
                        db.execute("BEGIN IMMEDIATE")
                        db.execute("INSERT INTO rows (body) VALUES (?)", (row,))
                        db.execute("COMMIT")
                        committed += 1
            await nc.flush()
            wall = time.perf_counter() - began
            python = processes.self_cpu() - cpu_before
            broker = _broker_cpu() - broker_before
        finally:
            db.close()
            await nc.close()
    return {"orders": orders, "published": published, "delivered": delivered,
            "commits": committed, "python_s": python, "broker_s": broker, "wall_s": wall,
            "cpu_ms_per_order": 1000.0 * (python + broker) / orders,
            "cpu_ms_per_order_by_process": {
                "nats-py + sqlite3": 1000.0 * python / orders,
                "broker": 1000.0 * broker / orders}}


def _broker_cpu() -> float:
    """CPU seconds of this process's nats-server children (the floor's own broker)."""
    readings = processes.tree_cpu(os.getpid(), "bench")
    return sum(r.cpu_seconds for r in readings.values() if r.label == "broker")


# -- the scenario ---------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _split(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    names: list[str] = []
    for run in runs:
        names += [n for n in run["cpu_ms_per_order_by_process"] if n not in names]
    return {name: _median([run["cpu_ms_per_order_by_process"].get(name) for run in runs])
            for name in names}


async def scenario(settings: Settings) -> dict[str, Any]:
    try:
        processes.descendants(os.getpid())
    except processes.Unsupported as error:
        raise Skip(str(error)) from None
    # Not settings.count: --n is the kernel scenarios' message count, not orders.
    orders = int(settings.extra.get("orders") or (300 if settings.quick else 500))
    rounds = settings.round_count
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in (*MODES, "floor")}
    stories: dict[str, dict[str, Story]] = {}
    for index in range(rounds):
        for mode in rotation(list(MODES), index):
            run = await _system_run(mode, orders, want_story=mode not in stories)
            if "story" in run:
                stories[mode] = {kind: Story(**story) for kind, story in run["story"].items()}
            runs[mode].append(run)
        story = stories.get("all") or next(iter(stories.values()))
        runs["floor"].append(await floor([story["delivery"], story["pickup"]], orders))

    def cpu(mode: str, label: str) -> dict[str, Any]:
        return variant(label, [r["cpu_ms_per_order"] or 0.0 for r in runs[mode]],
                       "CPU-ms/order", completed=_sum(runs[mode], "completed"),
                       errors=_sum(runs[mode], "errors"),
                       orders_per_s=_median([r.get("completed_per_s") for r in runs[mode]]),
                       to_completed=_median([r.get("cpu_ms_per_order_to_completed")
                                             for r in runs[mode]]),
                       tail_s=_median([r["window_s"] - r["first_post_to_last_completed_s"]
                                       for r in runs[mode]]),
                       loop_lag_ms=max((lag for r in runs[mode] for lag in
                                        r.get("loop_lag_ms_by_process", {}).values()
                                        if lag is not None), default=None))

    variants = {mode: cpu(mode, f"CPU per completed order, {MODE_LABELS[mode]}")
                for mode in MODES}
    variants["floor"] = variant("the floor: raw nats-py + sqlite3, same messages and commits",
                                [r["cpu_ms_per_order"] for r in runs["floor"]],
                                "CPU-ms/order")
    for mode in MODES:
        variants[f"{mode}_throughput"] = variant(
            f"completed orders/s, {MODE_LABELS[mode]}",
            [r["completed_per_s"] for r in runs[mode]], "orders/s")
    goals = {}
    for mode in MODES:
        goals[f"cpu_ms_per_order_{mode}"] = goal(
            f"CPU-ms per completed order, {MODE_LABELS[mode]}", variants[mode]["median"],
            GOAL_CPU_MS, "CPU-ms", at_most=True)
        goals[f"completed_per_s_{mode}"] = goal(
            f"completed orders/s sustained, {MODE_LABELS[mode]}",
            variants[f"{mode}_throughput"]["median"], GOAL_THROUGHPUT, "orders/s",
            at_most=False)
    idle = {mode: {name: _median([r["idle_cpu_ms_per_s"].get(name) for r in runs[mode]])
                   for name in runs[mode][0]["idle_cpu_ms_per_s"]}
            for mode in MODES if runs[mode]}
    lags = {mode: {name: max((r["loop_lag_ms_by_process"].get(name) or 0.0)
                             for r in runs[mode])
                   for name in runs[mode][0]["loop_lag_ms_by_process"]}
            for mode in MODES if runs[mode]}
    return {
        "status": "ok",
        "n": orders,
        "rounds": rounds,
        "clients": CLIENTS,
        "variants": variants,
        "ratios": ratios(variants, [
            *((mode, "floor", None, "CPU per order: the system over the floor")
              for mode in MODES),
            ("two_throughput", "one_throughput", None,
             "throughput: two processes over one process"),
            ("all_throughput", "one_throughput", None,
             "throughput: a process per service over one process")]),
        "goals": goals,
        "split_cpu_ms_per_order": {mode: _split(runs[mode]) for mode in (*MODES, "floor")},
        "loop_lag_ms": lags,
        "idle_cpu_ms_per_s": idle,
        "story": {mode: {kind: asdict(s) for kind, s in by_kind.items()}
                  for mode, by_kind in stories.items()},
        "runs": runs,
        "notes": [
            f"N orders (every other for delivery) from {CLIENTS} HTTP callers placing "
            "back to back; CPU (user+sys) of the whole `pizza up --simulate` tree from "
            "/proc, first POST until N completed and every queue and outbox empty",
            "throughput: N over first POST to N-th OrderCompleted handled by tracking "
            f"(/api/health polled every {POLL_SECONDS} s once all were placed)",
            "the floor: per order the story's published messages (publish_async), "
            "deliveries (fetch + ack) and commits (sqlite3, one INSERT each), "
            f"{FLOOR_CHUNK} orders at a time; CPU of this process + its nats-server",
            "the load generator runs on the same cores (not counted in the CPU figures)",
            f"runs[*].idle_cpu_ms_per_s: the tree at rest for {IDLE_SECONDS:g} s before the "
            "orders (polling loops, health); part of every second of the window",
        ],
    }


def _sum(runs: list[dict[str, Any]], key: str) -> int:
    return sum(int(r.get(key) or 0) for r in runs)
