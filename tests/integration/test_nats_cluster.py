"""On a real 3-node NATS cluster: PIZZA_NATS_URL lists its servers, streams get the
replicas the deployment asks for (PIZZA_NATS_REPLICAS), and an existing stream is brought
to the declared replicas and limits at start, its messages kept.

The cluster is the test's own (three nats-server processes on free local ports, each with
its own store under tmp_path), admitting the users `permissions.broker_users` renders, as
the embedded broker does; it is stopped and removed after the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pizza.app import load
from pizza.eventing import usage
from pizza.eventing.transport import credentials
from pizza.eventing.transport.base import STREAMS, Outgoing
from pizza.eventing.transport.embedded import EmbeddedNats, free_port
from pizza.eventing.transport.nats import NatsTransport
from pizza.eventing.transport.permissions import BrokerUsers, broker_users
from pizza.torture.nats_cluster import NatsCluster


@pytest.fixture
def users(tmp_path: Path) -> BrokerUsers:
    return broker_users(load(), tmp_path / "credentials")


@pytest.fixture
async def nats_cluster(tmp_path: Path, users: BrokerUsers) -> AsyncIterator[NatsCluster]:
    """Three clustered nodes with JetStream, owned by the test."""
    cluster = NatsCluster(tmp_path / "cluster", authorization=users.config,
                          credentials=credentials.load(users.seeds[credentials.OPERATOR]))
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


def as_service(cluster: NatsCluster, users: BrokerUsers, name: str) -> NatsTransport:
    return NatsTransport(cluster.url, name=f"pizza-{name}", identity=name,
                         credentials=credentials.load(users.seeds[name]))


async def test_services_reach_the_cluster_by_every_server_and_streams_get_three_replicas(
        nats_cluster: NatsCluster, users: BrokerUsers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_NATS_REPLICAS", "3")
    assert nats_cluster.url.count(",") == 2
    kitchen = as_service(nats_cluster, users, "kitchen")  # on its own credentials
    await kitchen.start()
    try:
        for stream in STREAMS:
            info = await kitchen.js.stream_info(stream)
            assert info.config.num_replicas == 3, stream
        subject = "pizza.events.kitchen.OrderPrepared.v1"
        assert await kitchen.publish([Outgoing("prepared-1", subject, b"{}")]) == [None]
        await kitchen.kv_put(usage.BUCKET, "kitchen", b"{}")  # the live registry's bucket
        bucket = await kitchen.js.stream_info(f"KV_{usage.BUCKET}")
        assert bucket.config.num_replicas == 3
    finally:
        await kitchen.close()
    await nats_cluster.wait_current("PIZZA_EVENTS")
    assert await nats_cluster.replicas("PIZZA_EVENTS") == 3


async def test_an_existing_stream_is_raised_to_the_declared_replicas_and_limits(
        nats_cluster: NatsCluster, users: BrokerUsers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_NATS_REPLICAS", "1")
    orders = as_service(nats_cluster, users, "orders")
    await orders.start()
    subject = "pizza.commands.notifications.SendEmail.v1"
    assert await orders.publish([Outgoing("email-1", subject, b"{}")]) == [None]
    await orders.close()
    assert await nats_cluster.replicas("PIZZA_COMMANDS") == 1

    monkeypatch.setenv("PIZZA_NATS_REPLICAS", "3")
    monkeypatch.setenv("PIZZA_NATS_DUPLICATE_WINDOW", "5m")
    monkeypatch.setenv("PIZZA_COMMANDS_MAX_AGE", "2d")
    monkeypatch.setenv("PIZZA_COMMANDS_MAX_BYTES", "64M")
    orders = as_service(nats_cluster, users, "orders")
    await orders.start()
    try:
        info = await orders.js.stream_info("PIZZA_COMMANDS")
    finally:
        await orders.close()
    assert info.config.num_replicas == 3
    assert info.config.duplicate_window == 300
    assert (info.config.max_age, info.config.max_bytes) == (2 * 86400, 64 << 20)
    assert info.state.messages == 1  # updated in place: the message was kept
    await nats_cluster.wait_current("PIZZA_COMMANDS")  # and copied to the other two nodes

    monkeypatch.delenv("PIZZA_NATS_REPLICAS")  # a tool, or a process missing the variable
    tool = NatsTransport(nats_cluster.url, credentials=nats_cluster.credentials)
    await tool.start()
    try:
        kept = (await tool.js.stream_info("PIZZA_COMMANDS")).config.num_replicas
    finally:
        await tool.close()
    assert kept == 3  # copies are never taken away at start


async def test_a_stream_survives_its_leaders_node_killed_and_restarted(
        nats_cluster: NatsCluster, users: BrokerUsers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_NATS_REPLICAS", "3")
    orders = as_service(nats_cluster, users, "orders")
    await orders.start()
    subject = "pizza.events.orders.OrderCancelled.v1"
    try:
        sent = [Outgoing(f"m-{n}", subject, b"{}") for n in range(50)]
        assert await orders.publish(sent) == [None] * 50
        leader = await nats_cluster.leader("PIZZA_EVENTS")
        await nats_cluster.kill(leader)
        more = [Outgoing(f"m-{n}", subject, b"{}") for n in range(40, 80)]  # 40-49 again
        outcomes: list[str | None] = []
        for _ in range(60):  # while it reconnects and a new leader is elected: in doubt
            outcomes = await orders.publish(more, timeout=2.0)
            if outcomes == [None] * 40:
                break
            await asyncio.sleep(0.5)
        assert outcomes == [None] * 40
        assert await nats_cluster.leader("PIZZA_EVENTS") != leader
        await nats_cluster.restart(leader)
        await nats_cluster.wait_current("PIZZA_EVENTS")
        stored = await orders.stored_by_subject("PIZZA_EVENTS", subject)
    finally:
        await orders.close()
    assert stored == {subject: 80}  # none lost, the ten sent twice stored once


async def test_replicas_on_a_single_server_fail_at_start_saying_why(
        nats_server: EmbeddedNats) -> None:
    transport = NatsTransport(nats_server.url, replicas=3)
    try:
        with pytest.raises(RuntimeError, match="3 replicas need a NATS cluster"):
            await transport.start()
    finally:
        await transport.close()


async def test_sync_always_reaches_the_embedded_servers_jetstream(tmp_path: Path) -> None:
    monitor = free_port()
    server = EmbeddedNats(tmp_path / "nats", sync="always",
                          extra_config=f"http: 127.0.0.1:{monitor}\n")
    async with server, httpx.AsyncClient(timeout=5) as http:
        varz = (await http.get(f"http://127.0.0.1:{monitor}/varz")).json()
    config = varz["jetstream"]["config"]
    assert config.get("sync_always") is True
