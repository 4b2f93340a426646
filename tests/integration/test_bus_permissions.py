"""Every service has its own identity on the bus, and the broker itself refuses the rest.

Against a real nats-server started with the authorization block that
``eventing/transport/permissions.py`` derives from the services' own declarations (the
same one `pizza up` and `pizza broker-config` use): kitchen, on its own credentials, can
do all it needs, and nothing of orders'.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from harness import eventually
from pizza.app import load
from pizza.cli_common import pizza_command
from pizza.contracts.orders import OrderConfirmedV1, OrderLine
from pizza.eventing import ServiceHost
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.personal import KEYS_BUCKET
from pizza.eventing.transport import credentials
from pizza.eventing.transport.base import DEAD_REASON, Outgoing
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport
from pizza.eventing.transport.permissions import BrokerUsers, broker_users
from pizza.services.kitchen import tickets

CONFIRMED_V1 = "pizza.events.orders.OrderConfirmed.v1"


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, BrokerUsers]]:
    users = broker_users(load(), tmp_path / "credentials")
    server = EmbeddedNats(tmp_path / "nats", authorization=users.config,
                          credentials=credentials.load(users.seeds[credentials.OPERATOR]))
    async with server:
        # The streams exist, as after any service started once.
        operator = NatsTransport(server.url, credentials=credentials.load(
            users.seeds[credentials.OPERATOR]))
        await operator.start()
        await operator.close()
        yield server, users


class Refusals:
    """What the broker says it refused a raw connection (its error callback)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

        async def noted(error: Exception) -> None:  # nats-py wants a coroutine function
            self.errors.append(str(error))

        self.callback = noted

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]


@contextlib.asynccontextmanager
async def connected_as(server: EmbeddedNats, users: BrokerUsers, who: str,
                       refusals: Refusals) -> AsyncIterator[NATS]:
    nc = await nats.connect(server.url, allow_reconnect=False, error_cb=refusals.callback,
                            inbox_prefix=credentials.inbox_prefix(who),
                            **credentials.load(users.seeds[who]).connect_options())
    try:
        yield nc
    finally:
        await nc.close()


def confirmed(order_id: str, source: str = "orders") -> bytes:
    message = OrderConfirmedV1(
        order_id=order_id, customer_id="c-1", order_value=9.5, fulfilment="pickup",
        delivery_id=None, items=[OrderLine(menu_item_id="margherita", name="Margherita",
                                           quantity=1, unit_price=9.5)])
    meta = Metadata(type="OrderConfirmed", version=1, source=source)
    return Envelope(meta, message.to_data()).encode()


async def stored(server: EmbeddedNats, users: BrokerUsers, stream: str,
                 subject: str) -> int:
    async with connected_as(server, users, credentials.OPERATOR, Refusals()) as nc:
        info = await nc.jetstream().stream_info(stream, subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))


async def test_seeds_are_made_once_and_readable_by_their_owner_only(tmp_path: Path) -> None:
    first = broker_users(load(), tmp_path / "credentials")
    again = broker_users(load(), tmp_path / "credentials")
    assert first.config == again.config, "the same keys on every start"
    assert set(first.seeds) == {"orders", "kitchen", "delivery", "pickup", "loyalty",
                                "notifications", "tracking", "operator"}
    for seed in first.seeds.values():
        assert stat.S_IMODE(os.stat(seed).st_mode) == 0o600
        assert credentials.load(seed).kind == "nkey"
    assert stat.S_IMODE(os.stat(tmp_path / "credentials").st_mode) == 0o700


async def test_kitchen_may_not_publish_orders_events(
        bus: tuple[EmbeddedNats, BrokerUsers]) -> None:
    server, users = bus
    refusals = Refusals()
    async with connected_as(server, users, "kitchen", refusals) as nc:
        with pytest.raises(TimeoutError):  # no ack: the broker dropped it at the door
            await nc.jetstream().publish("pizza.events.orders.OrderConfirmed.v2",
                                         confirmed(str(uuid.uuid4())), timeout=1.0)
        await eventually(lambda: refusals.violations(), timeout=5)
    assert 'publish to "pizza.events.orders.orderconfirmed.v2"' in (
        refusals.violations()[0].lower())
    assert await stored(server, users, "PIZZA_EVENTS",
                        "pizza.events.orders.OrderConfirmed.v2") == 0


async def test_kitchen_may_not_read_or_take_over_the_queues_of_orders(
        bus: tuple[EmbeddedNats, BrokerUsers]) -> None:
    server, users = bus
    async with connected_as(server, users, "orders", Refusals()) as nc:
        await nc.jetstream().add_consumer("PIZZA_EVENTS", ConsumerConfig(
            durable_name="orders-note-prepared",
            filter_subject="pizza.events.kitchen.OrderPrepared.v1"))

    refusals = Refusals()
    async with connected_as(server, users, "kitchen", refusals) as nc:
        js = nc.jetstream()
        attempts: dict[str, Any] = {
            "pull from orders' queue": js.pull_subscribe_bind(
                "orders-note-prepared", stream="PIZZA_EVENTS"),
            "create a queue in orders' name": js.add_consumer("PIZZA_EVENTS", ConsumerConfig(
                durable_name="orders-learn-delivery-address",
                filter_subject="pizza.events.delivery.DeliveryAddressRegistered.v1")),
            "delete orders' queue": js.delete_consumer("PIZZA_EVENTS",
                                                       "orders-note-prepared"),
            "delete a stream": js.delete_stream("PIZZA_EVENTS"),
            "purge a stream": js.purge_stream("PIZZA_COMMANDS"),
        }
        subscription = await attempts.pop("pull from orders' queue")
        with pytest.raises(TimeoutError):  # the pull request never reached the consumer
            await subscription.fetch(1, timeout=1.0)
        for what, attempt in attempts.items():
            with pytest.raises(TimeoutError):  # no answer: the request was dropped
                await asyncio.wait_for(attempt, 3.0)
                pytest.fail(f"kitchen could {what}")
        # Another service's answers: its inbox is its own.
        await nc.subscribe("_INBOX_orders.>")
        await nc.flush()
        await eventually(lambda: len(refusals.violations()) >= 6, timeout=5)

    refused = " ".join(refusals.violations()).lower()
    assert "consumer.msg.next.pizza_events.orders-note-prepared" in refused
    assert "consumer.durable.create.pizza_events.orders-learn-delivery-address" in refused
    assert "consumer.delete.pizza_events.orders-note-prepared" in refused
    assert "stream.delete.pizza_events" in refused
    assert "stream.purge.pizza_commands" in refused
    assert 'subscription to "_inbox_orders.>"' in refused
    async with connected_as(server, users, credentials.OPERATOR, Refusals()) as nc:
        js = nc.jetstream()
        assert (await js.consumer_info("PIZZA_EVENTS", "orders-note-prepared")).name, \
            "orders' queue is still there"
        assert (await js.stream_info("PIZZA_EVENTS")).config.name == "PIZZA_EVENTS"
        with pytest.raises(NotFoundError):
            await js.consumer_info("PIZZA_EVENTS", "orders-learn-delivery-address")


@pytest.fixture
def kitchen_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    monkeypatch.delenv("PIZZA_DATABASE_URL", raising=False)
    return tmp_path


async def test_kitchen_does_all_it_needs_on_its_own_credentials(
        bus: tuple[EmbeddedNats, BrokerUsers], kitchen_home: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Streams, its queues, the usage registry, consuming, publishing, the outbox's look
    at the stream, dead letters and a replay: with nothing refused."""
    server, users = bus
    kitchen = next(s for s in load(["kitchen"]))
    as_kitchen = NatsTransport(server.url, name="pizza-kitchen", identity="kitchen",
                               credentials=credentials.load(users.seeds["kitchen"]))
    as_orders = NatsTransport(server.url, name="pizza-orders", identity="orders",
                              credentials=credentials.load(users.seeds["orders"]))
    await as_kitchen.start()
    await as_orders.start()
    host = ServiceHost(kitchen, as_kitchen, relay_interval=0.05)
    await host.start()
    try:
        order_id = str(uuid.uuid4())
        assert await as_orders.publish(
            [Outgoing(str(uuid.uuid4()), CONFIRMED_V1, confirmed(order_id))]) == [None]
        opened = next(c for c in host.consumers if c.subscription.name == "open-ticket")
        await eventually(lambda: opened.stats.handled == 1, timeout=10)

        async with host.unit_of_work() as ctx:
            assert await tickets.start_one(ctx, order_id)
        preparing = "pizza.events.kitchen.OrderPreparing.v1"
        await eventually(lambda: stored(server, users, "PIZZA_EVENTS", preparing),
                         timeout=10)

        # The outbox's look at the stream after a long stop, under its own name.
        from datetime import UTC, datetime, timedelta

        probe = Outgoing(str(uuid.uuid4()), preparing, b"{}")
        assert await as_kitchen.publish([probe]) == [None]
        assert await as_kitchen.stored_ids(
            [probe], datetime.now(UTC) - timedelta(minutes=1)) == {probe.message_id}

        # A forged message goes to kitchen's own dead letters; a replay recreates its
        # queues; its answers come to its own inbox; it reads the live registry.
        forged = confirmed(str(uuid.uuid4()), source="kitchen")
        assert await as_orders.publish([Outgoing(str(uuid.uuid4()), CONFIRMED_V1,
                                                 forged)]) == [None]
        await eventually(lambda: opened.stats.dead_lettered == 1, timeout=10,
                         what=f"dead letter {opened.stats}")
        await host.replay()
        replayed = next(c for c in host.consumers if c.subscription.name == "open-ticket")
        await eventually(lambda: (replayed.stats.handled, replayed.stats.dead_lettered)
                         == (1, 1), timeout=10, what=f"the replay {replayed.stats}")
        assert set(await as_kitchen.kv_entries("PIZZA_USAGE")) == {"kitchen"}
    finally:
        await host.stop()
        await as_kitchen.close()
        await as_orders.close()
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [], "the broker refused kitchen something it needs"


async def test_a_forged_source_is_dead_lettered_as_forged(
        bus: tuple[EmbeddedNats, BrokerUsers], kitchen_home: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    server, users = bus
    kitchen = next(s for s in load(["kitchen"]))
    transport = NatsTransport(server.url, identity="kitchen",
                              credentials=credentials.load(users.seeds["kitchen"]))
    await transport.start()
    host = ServiceHost(kitchen, transport, relay_interval=0.05)
    await host.start()
    try:
        # On orders' subject, claiming to come from the kitchen: whoever put it there
        # (here the operator, who may publish anything), it is not what it says.
        async with connected_as(server, users, credentials.OPERATOR, Refusals()) as nc:
            await nc.jetstream().publish(CONFIRMED_V1, confirmed(str(uuid.uuid4()),
                                                                 source="kitchen"))
            opened = next(c for c in host.consumers if c.subscription.name == "open-ticket")
            await eventually(lambda: opened.stats.dead_lettered == 1, timeout=10)
            sub = await nc.jetstream().pull_subscribe(
                "pizza.deadletters.kitchen.>", stream="PIZZA_DEADLETTERS")
            [letter] = await sub.fetch(1, timeout=5)
        assert (letter.headers or {})[DEAD_REASON] == "forged"
        assert opened.stats.handled == 0
    finally:
        await host.stop()
        await transport.close()
    lines = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert len(lines) == 1 and len(lines[0]) < 600, lines
    assert "'kitchen' does not match the subject" in lines[0]


async def test_the_tools_connect_as_the_operator_and_say_so_when_not_admitted(
        bus: tuple[EmbeddedNats, BrokerUsers], tmp_path: Path) -> None:
    server, users = bus

    async def deadletters(**extra: str) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
        env.update(PIZZA_HOME=str(tmp_path / "elsewhere"), PIZZA_NATS_URL=server.url, **extra)
        tool = await asyncio.create_subprocess_exec(
            *pizza_command(), "deadletters", "list", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        said, _ = await asyncio.wait_for(tool.communicate(), 60)
        return tool.returncode or 0, said.decode()

    code, said = await deadletters()
    assert code == 1 and "does not admit us" in said and len(said.splitlines()) <= 2, said
    code, said = await deadletters(PIZZA_NATS_CREDS=str(users.seeds[credentials.OPERATOR]))
    assert code == 0, said
    code, said = await deadletters(PIZZA_NATS_CREDS=str(tmp_path))
    assert code == 1 and "cannot read NATS credentials" in said, said


async def test_kitchen_reads_the_keys_of_personal_data_but_cannot_purge_one(
        bus: tuple[EmbeddedNats, BrokerUsers]) -> None:
    """Orders seals personal data (its SendEmail's recipient), so it makes and purges
    keys; the kitchen only opens what it receives: forgetting a customer is not its call."""
    server, users = bus
    async with connected_as(server, users, "orders", Refusals()) as nc:
        kv = await nc.jetstream().create_key_value(bucket=KEYS_BUCKET, history=1)
        await kv.create("customer-ref", b"k" * 32)

    refusals = Refusals()
    async with connected_as(server, users, "kitchen", refusals) as nc:
        kv = await nc.jetstream().key_value(KEYS_BUCKET)
        assert (await kv.get("customer-ref")).value == b"k" * 32
        with pytest.raises(TimeoutError):
            await nc.jetstream().publish(f"$KV.{KEYS_BUCKET}.customer-ref", b"",
                                         headers={"KV-Operation": "PURGE"}, timeout=1.0)
        await eventually(lambda: refusals.violations(), timeout=5)
        assert (await kv.get("customer-ref")).value == b"k" * 32, "the key is still there"
