"""Scenario ``consume``: the kernel consumer against raw nats-py and FastStream.

The stream is prefilled once with N envelopes (unique ids). Every run makes a fresh
durable pull consumer (deliver all, ``max_ack_pending`` 256, explicit acks) on it and is
timed from the queue's creation until N messages have been handled:

(a) kernel: a ``Service`` with one trivial handler (``max_in_flight=256``, start "all")
    run by a ``ServiceHost`` on a fresh SQLite file: decode + validate, inbox rows and
    one transaction per fetched batch, then acks. Done when ``stats.handled`` reaches N.
(b) raw: ``fetch(256)``, then per message ``orjson.loads`` + ``model_validate`` of the
    data with the same pydantic model + ``ack``. No database.
(c) FastStream ``PullSub(256)``: a handler per message (FastStream runs each in a task).
(d) FastStream ``PullSub(256, batch=True)``: one handler call per batch of 256.

FastStream's handlers take a pydantic envelope model (``data`` is the same model as the
kernel's), so FastStream decodes and validates as much as the others. Its per-message log
lines are switched off (``logger=None``): the kernel logs nothing per message either.
N is rounded up to a multiple of 256, so that no variant waits on a partial last batch
(FastStream's batch mode waits for a full batch or its timeout).
"""

import asyncio
import importlib.util
import logging
import time
from typing import Any

import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel

from pizza.bench.common import (
    BENCH_REGISTRY,
    STREAM,
    SUBJECT,
    BenchPingedV1,
    Settings,
    alternate,
    make_messages,
    private_broker,
    ratios,
    sqlite_url,
    throughput,
    time_limit,
    wait_until,
)
from pizza.eventing import Context, Service, ServiceHost
from pizza.eventing.transport.nats import NatsTransport

BATCH = 256
FETCH_TIMEOUT = 0.5  # the kernel's fetch timeout, used by every variant


class BenchEnvelope(BaseModel):
    """The envelope as FastStream sees it: metadata as a dict, data as the typed payload."""

    metadata: dict[str, Any]
    data: BenchPingedV1


async def prefill(js: Any, count: int) -> None:
    futures = []
    for message in make_messages(count):
        futures.append(await js.publish_async(message.subject, message.payload,
                                              headers=message.headers()))
    await asyncio.gather(*futures)
    info = await js.stream_info(STREAM)
    if info.state.messages != count:
        raise RuntimeError(f"prefill stored {info.state.messages} of {count}")


def round_up(count: int) -> int:
    return max(BATCH, -(-count // BATCH) * BATCH)


def kernel_service(name: str, max_in_flight: int = BATCH) -> Service:
    service = Service(name, description="benchmark consumer")

    @service.handles(BenchPingedV1, max_in_flight=max_in_flight, start="all", name="pinged")
    async def pinged(event: BenchPingedV1, ctx: Context) -> None:
        return None

    return service


async def scenario(settings: Settings) -> dict[str, Any]:
    count = round_up(settings.count(5_000, 50_000))
    rounds = settings.round_count
    runs = iter(range(1_000_000))
    # FastStream is a peer to compare with, not a dependency: without it, run the rest.
    peer_installed = importlib.util.find_spec("faststream") is not None

    async with private_broker("consume") as (home, server):
        transport = NatsTransport(server.url, name="bench-kernel")
        await transport.start()
        nc = await nats.connect(server.url, name="bench-raw")
        js = nc.jetstream(publish_async_max_pending=8192)
        await prefill(js, count)

        async def forget(durable: str) -> None:
            try:
                await js.delete_consumer(STREAM, durable)
            except Exception:  # already gone
                return

        async def run_kernel(n: int) -> float:
            tag = f"k{next(runs)}"
            host = ServiceHost(kernel_service(f"bench-{tag}"), transport,
                               database_url=sqlite_url(home / f"{tag}.db"),
                               registry=BENCH_REGISTRY)
            await host.db.create()  # untimed: start() only finds the tables
            consumer = host.consumers[0]
            began = time.perf_counter()
            await host.start()
            await wait_until(lambda: consumer.stats.handled >= n, time_limit(n),
                             f"kernel consumer handling {n}")
            elapsed = time.perf_counter() - began
            await host.stop()
            await forget(consumer.name)
            if consumer.stats.dead_lettered or consumer.stats.duplicates:
                raise RuntimeError(f"kernel consumer: {consumer.stats}")
            return elapsed

        async def run_raw(n: int) -> float:
            durable = f"raw{next(runs)}"
            began = time.perf_counter()
            await js.add_consumer(STREAM, ConsumerConfig(
                durable_name=durable, filter_subject=SUBJECT, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30, max_ack_pending=BATCH, deliver_policy=DeliverPolicy.ALL))
            sub = await js.pull_subscribe_bind(durable=durable, stream=STREAM)
            handled = 0
            deadline = began + time_limit(n)
            while handled < n:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"raw consumer handled {handled} of {n}")
                try:
                    messages = await sub.fetch(BATCH, timeout=FETCH_TIMEOUT)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in messages:
                    BenchPingedV1.model_validate(orjson.loads(msg.data)["data"])
                    await msg.ack()
                    handled += 1
            elapsed = time.perf_counter() - began
            await sub.unsubscribe()
            await forget(durable)
            return elapsed

        def faststream_run(batch: bool) -> Any:
            from faststream.nats import JStream, NatsBroker, PullSub

            async def run(n: int) -> float:
                durable = f"fs{'b' if batch else 'm'}{next(runs)}"
                broker = NatsBroker(server.url, logger=None, log_level=logging.DEBUG,
                                    graceful_timeout=5.0)
                stream = JStream(name=STREAM, declare=False)
                config = ConsumerConfig(max_ack_pending=BATCH, ack_wait=30)
                received = 0
                finished = asyncio.Event()

                if batch:
                    @broker.subscriber(SUBJECT, stream=stream, durable=durable, config=config,
                                       deliver_policy=DeliverPolicy.ALL,
                                       pull_sub=PullSub(BATCH, timeout=FETCH_TIMEOUT,
                                                        batch=True))
                    async def on_batch(bodies: list[BenchEnvelope]) -> None:
                        nonlocal received
                        received += len(bodies)
                        if received >= n:
                            finished.set()
                else:
                    @broker.subscriber(SUBJECT, stream=stream, durable=durable, config=config,
                                       deliver_policy=DeliverPolicy.ALL,
                                       pull_sub=PullSub(BATCH, timeout=FETCH_TIMEOUT))
                    async def on_message(body: BenchEnvelope) -> None:
                        nonlocal received
                        received += 1
                        if received >= n:
                            finished.set()

                await broker.connect()  # untimed, as the other variants' connections
                began = time.perf_counter()
                await broker.start()
                try:
                    await asyncio.wait_for(finished.wait(), time_limit(n))
                except TimeoutError:
                    raise TimeoutError(f"FastStream handled {received} of {n}") from None
                elapsed = time.perf_counter() - began
                await broker.stop()
                await forget(durable)
                return elapsed

            return run

        contenders: dict[str, Any] = {"kernel": run_kernel, "raw": run_raw}
        if peer_installed:
            contenders.update(faststream=faststream_run(batch=False),
                              faststream_batch=faststream_run(batch=True))
        try:
            seconds = await alternate(settings.select(contenders), count, rounds,
                                      warmup=settings.warmup(count))
        finally:
            await nc.close()
            await transport.close()

    labels = {
        "kernel": "kernel Consumer (SQLite inbox, 1 tx/batch)",
        "raw": "nats-py fetch(256) + validate + ack",
        "faststream": "FastStream PullSub(256), per message",
        "faststream_batch": "FastStream PullSub(256, batch=True)",
    }
    variants = {name: throughput(labels[name], count, runs) for name, runs in seconds.items()}
    return {
        "status": "ok",
        "n": count,
        "rounds": rounds,
        "variants": variants,
        "ratios": ratios(variants, [("kernel", "raw", 0.75, ""),
                                    ("kernel", "faststream", 2.0, ""),
                                    ("kernel", "faststream_batch", None, "")]),
        "notes": [
            "timed from the durable consumer's creation until N handled; fresh durable and "
            "(kernel) fresh SQLite file per run",
            "max_ack_pending=256 for every variant; FastStream per-message logging off",
            f"N rounded up to a multiple of {BATCH}",
            *([] if peer_installed else [
                "FastStream is not installed: its variants were skipped "
                "(pip install -e '.[bench]' to compare)"]),
        ],
        **({} if peer_installed else {"skipped": ["faststream", "faststream_batch"]}),
    }
