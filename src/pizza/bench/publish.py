"""Scenario ``publish``: the outbox relay against raw nats-py publishing, same messages.

(a) relay: N rows are written into a service's outbox (500 per transaction, untimed), then
    ``Relay.drain()`` is timed until the outbox is empty (read 1000 rows, publish_async
    them, await the acks, delete them, repeat).
(b) publish_async: raw nats-py ``js.publish_async`` for all N, then await every ack.
(c) gathered publish: raw ``js.publish`` awaited with asyncio.gather, 1000 at a time.

All three send the same bytes: a ~420-byte envelope with ``Nats-Msg-Id`` and
``traceparent`` headers, fresh ids every run (the duplicate window must drop nothing), to
a stream purged before every run. The stream's message count is checked after each run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats

from pizza.bench.common import (
    STREAM,
    Settings,
    alternate,
    make_messages,
    private_broker,
    ratios,
    sqlite_url,
    throughput,
)
from pizza.eventing import outbox
from pizza.eventing.storage import Database
from pizza.eventing.transport.nats import NatsTransport

WRITE_BATCH = 500
GATHER_CHUNK = 1000


async def scenario(settings: Settings) -> dict[str, Any]:
    count = settings.count(5_000, 50_000)
    rounds = settings.round_count
    async with private_broker("publish") as (home, server):
        transport = NatsTransport(server.url, name="bench-relay")
        await transport.start()  # creates the streams
        db = Database("bench", sqlite_url(home / "bench.db"))
        await db.create()
        relay = outbox.Relay(db, transport)
        nc = await nats.connect(server.url, name="bench-raw")
        js = nc.jetstream(publish_async_max_pending=8192)  # as NatsTransport

        async def stored() -> int:
            info = await js.stream_info(STREAM)
            return int(info.state.messages)

        async def check(expected: int, variant: str) -> None:
            got = await stored()
            if got != expected:
                raise RuntimeError(f"{variant}: the stream holds {got} messages, "
                                   f"expected {expected}")

        async def run_relay(n: int) -> float:
            messages = make_messages(n)
            for start in range(0, n, WRITE_BATCH):
                async with db.begin() as conn:
                    await outbox.write(conn, messages[start:start + WRITE_BATCH])
            await js.purge_stream(STREAM)
            began = time.perf_counter()
            sent = await relay.drain()
            elapsed = time.perf_counter() - began
            if sent != n or await relay.backlog():
                raise RuntimeError(f"relay sent {sent} of {n}")
            await check(n, "relay")
            return elapsed

        async def run_publish_async(n: int) -> float:
            messages = make_messages(n)
            await js.purge_stream(STREAM)
            began = time.perf_counter()
            futures = [await js.publish_async(m.subject, m.payload, headers=m.headers())
                       for m in messages]
            await asyncio.gather(*futures)
            elapsed = time.perf_counter() - began
            await check(n, "publish_async")
            return elapsed

        async def run_gathered(n: int) -> float:
            messages = make_messages(n)
            await js.purge_stream(STREAM)
            began = time.perf_counter()
            for start in range(0, n, GATHER_CHUNK):
                await asyncio.gather(*(js.publish(m.subject, m.payload, headers=m.headers())
                                       for m in messages[start:start + GATHER_CHUNK]))
            elapsed = time.perf_counter() - began
            await check(n, "gathered publish")
            return elapsed

        try:
            seconds = await alternate(
                settings.select({"relay": run_relay, "publish_async": run_publish_async,
                                 "gathered_publish": run_gathered}),
                count, rounds, warmup=settings.warmup(count))
        finally:
            await nc.close()
            await transport.close()
            await db.close()

    payload_bytes = len(make_messages(1)[0].payload)
    labels = {
        "relay": "kernel outbox relay (Relay.drain)",
        "publish_async": "nats-py js.publish_async + acks",
        "gathered_publish": f"nats-py gathered js.publish ({GATHER_CHUNK}/gather)",
    }
    variants = {name: throughput(labels[name], count, runs) for name, runs in seconds.items()}
    return {
        "status": "ok",
        "n": count,
        "rounds": rounds,
        "payload_bytes": payload_bytes,
        "variants": variants,
        "ratios": ratios(variants, [("relay", "publish_async", 0.9, ""),
                                    ("relay", "gathered_publish", None, "")]),
        "notes": [
            f"outbox rows written {WRITE_BATCH} per transaction before timing; the relay's "
            "time includes reading and deleting them (SQLite, WAL)",
            "same payload and headers (Nats-Msg-Id, traceparent) in every variant; "
            "stream purged before each run",
        ],
    }
