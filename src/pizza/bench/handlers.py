"""Scenario ``handlers``: one transaction per fetched batch against one per message.

Every variant is the kernel consumer on SQLite with a handler that does one INSERT into a
service table, reading the same prefilled stream through a fresh durable queue:

(a) batch: the kernel as it is, ``max_in_flight=256``: fetch up to 256, handle them all
    in ONE transaction (inbox rows + 256 INSERTs + commit), then ack.
(b) tx per message: the same fetch of 256, but each message in a transaction of its own
    (inbox row + INSERT + commit, then ack). A ``Consumer`` subclass in this module routes
    ``_transaction(batch)`` to ``_transaction([one])`` per message; the kernel is
    unchanged. This isolates the cost of the commits: the broker traffic is the same.
(c) max_in_flight=1: what a service gets by declaring ``max_in_flight=1``: fetch(1), one
    transaction, ack, and only then the next fetch. This adds a broker round trip per
    message on top of (b) (the in-flight limit caps broker throughput), so it is an upper
    bound of the per-message cost, not the transaction cost alone.
"""

from __future__ import annotations

import time
from typing import Any

import nats
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from pizza.bench.common import (
    BENCH_REGISTRY,
    STREAM,
    BenchPingedV1,
    Settings,
    alternate,
    private_broker,
    ratios,
    sqlite_url,
    throughput,
    time_limit,
    wait_until,
)
from pizza.bench.consume import BATCH, prefill, round_up
from pizza.eventing import Context, Service, ServiceHost
from pizza.eventing.consumer import Consumer, Received
from pizza.eventing.transport.nats import NatsTransport

tables = MetaData()
bench_rows = Table(
    "bench_rows",
    tables,
    Column("message_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("total_pence", Integer, nullable=False),
)


class OneTransactionPerMessage(Consumer):
    """The kernel's consumer, committing every message of a fetched batch on its own."""

    async def _transaction(self, batch: list[Received]) -> None:
        for item in batch:
            await super()._transaction([item])


def service(name: str, max_in_flight: int) -> Service:
    svc = Service(name, tables=tables, description="benchmark handler with one INSERT")

    @svc.handles(BenchPingedV1, max_in_flight=max_in_flight, start="all", name="pinged")
    async def pinged(event: BenchPingedV1, ctx: Context) -> None:
        assert ctx.cause is not None
        await ctx.db.execute(insert(bench_rows).values(
            message_id=ctx.cause.id, order_id=event.order_id, total_pence=event.total_pence))

    return svc


async def scenario(settings: Settings) -> dict[str, Any]:
    count = round_up(settings.count(2_048, 10_240))
    rounds = settings.round_count
    runs = iter(range(1_000_000))

    async with private_broker("handlers") as (home, server):
        transport = NatsTransport(server.url, name="bench-kernel")
        await transport.start()
        nc = await nats.connect(server.url, name="bench-setup")
        js = nc.jetstream(publish_async_max_pending=8192)
        await prefill(js, count)

        def kernel(max_in_flight: int, one_by_one: bool) -> Any:
            async def run(n: int) -> float:
                tag = f"h{next(runs)}"
                host = ServiceHost(service(f"bench-{tag}", max_in_flight), transport,
                                   database_url=sqlite_url(home / f"{tag}.db"),
                                   registry=BENCH_REGISTRY)
                if one_by_one:
                    host.consumers = [
                        OneTransactionPerMessage(c.service, c.subscription, c.db, c.transport,
                                                 c.registry, c.relay)
                        for c in host.consumers]
                await host.db.create()
                consumer = host.consumers[0]
                began = time.perf_counter()
                await host.start()
                await wait_until(lambda: consumer.stats.handled >= n, time_limit(n),
                                 f"{tag} handling {n}")
                elapsed = time.perf_counter() - began
                await host.stop()
                async with host.db.begin() as conn:  # the engine reconnects after dispose
                    rows = await conn.scalar(select(func.count()).select_from(bench_rows))
                await host.db.close()
                if rows != consumer.stats.handled or consumer.stats.dead_lettered:
                    raise RuntimeError(f"{tag}: {rows} rows for {consumer.stats}")
                try:
                    await js.delete_consumer(STREAM, consumer.name)
                except Exception:  # already gone
                    pass
                return elapsed

            return run

        try:
            seconds = await alternate(
                settings.select({"batch": kernel(BATCH, one_by_one=False),
                                 "tx_per_message": kernel(BATCH, one_by_one=True),
                                 "max_in_flight_1": kernel(1, one_by_one=False)}),
                count, rounds, warmup=settings.warmup(count))
        finally:
            await nc.close()
            await transport.close()

    labels = {
        "batch": "1 tx per fetched batch (max_in_flight=256)",
        "tx_per_message": "1 tx per message, fetch(256)",
        "max_in_flight_1": "max_in_flight=1 (fetch 1, 1 tx)",
    }
    variants = {name: throughput(labels[name], count, runs) for name, runs in seconds.items()}
    return {
        "status": "ok",
        "n": count,
        "rounds": rounds,
        "variants": variants,
        "ratios": ratios(variants, [
            ("batch", "tx_per_message", None, "the cost of a commit per message"),
            ("batch", "max_in_flight_1", None,
             "a commit per message + a fetch round trip per message")]),
        "notes": [
            "handler: one INSERT into a service table; SQLite WAL, synchronous=NORMAL",
            "tx_per_message uses a Consumer subclass (bench only) that commits each message "
            "of a fetched batch separately; max_in_flight_1 also pays a broker round trip "
            "per message",
        ],
    }
