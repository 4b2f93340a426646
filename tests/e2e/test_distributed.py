"""Distributed mode: one `pizza serve` process per service (two for the kitchen), on
PostgreSQL and a NATS server, talking only through the bus, each process as its own
service: the server admits only the users `pizza broker-config` writes, and each process
connects with its service's seed (PIZZA_NATS_CREDS).

The test owns what it uses: a nats-server it starts on a free port with its own store,
and a PostgreSQL database with a unique name, dropped at the end. It never touches a
broker or a database it did not make, so runs on one machine cannot disturb each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from running_pizza import PIZZA, Process, environment, eventually, free_port

from pizza.cli_common import connect_options
from pizza.eventing.transport import credentials
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.web.identity import issue_token

pytestmark = pytest.mark.e2e

POSTGRES = os.environ.get("PIZZA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
CONSUMERS = ("kitchen", "kitchen", "delivery", "pickup", "loyalty", "notifications",
             "tracking")


def listening(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host.split("@")[-1], int(port))) == 0


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    import asyncpg

    name = f"pizza_e2e_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_separate_processes_complete_orders_and_share_the_kitchen(
        tmp_path: Path) -> None:
    if not listening(POSTGRES):
        pytest.skip(f"PostgreSQL at {POSTGRES} is not running")
    processes: list[Process] = []
    smtp_port = free_port()
    # Written where the tools of this PIZZA_HOME find the operator's seed.
    written = await asyncio.create_subprocess_exec(
        PIZZA, "broker-config", "--out", str(tmp_path / "nats"), env=environment(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    said, _ = await asyncio.wait_for(written.communicate(), 60)
    assert written.returncode == 0, said.decode()
    seeds = tmp_path / "nats" / "credentials"
    server = EmbeddedNats(tmp_path / "nats",
                          authorization=(tmp_path / "nats/authorization.conf").read_text(),
                          credentials=credentials.load(seeds / "operator.nk"))
    async with server as broker, fresh_database() as database_url:
        env = environment(tmp_path, PIZZA_NATS_URL=broker.url, PIZZA_DATABASE_URL=database_url,
                          PIZZA_SIMULATE="1", PIZZA_SMTP_SINK="1",
                          PIZZA_SMTP_PORT=str(smtp_port))

        def serve(service: str) -> Process:
            port = free_port()
            own = {**env, "PIZZA_NATS_CREDS": str(seeds / f"{service}.nk")}
            process = Process(["serve", service, "--port", str(port)], own,
                              tmp_path / f"{service}-{port}.log", f"http://127.0.0.1:{port}")
            process.start()
            processes.append(process)
            return process

        try:
            # Consumers first: their durable queues must exist before orders publishes.
            started = [serve(name) for name in CONSUMERS]
            await asyncio.gather(*(p.wait_healthy() for p in started))
            orders = serve("orders")
            await orders.wait_healthy()
            url = {name: p.url for name, p in zip(CONSUMERS, started, strict=True)}
            kitchens = [p for name, p in zip(CONSUMERS, started, strict=True)
                        if name == "kitchen"]
            operator = issue_token("operator", home=tmp_path)  # the processes' own issuer
            await check_the_story(orders.url, url, kitchens, broker.url, operator)
        finally:
            for process in processes:
                process.stop()


async def check_the_story(orders_url: str, url: dict[str, str], kitchens: list[Process],
                          nats_url: str, operator: str, count: int = 12) -> None:
    async with httpx.AsyncClient(timeout=10,
                                 headers={"Authorization": f"Bearer {operator}"}) as http:
        placed: list[tuple[str, str]] = []
        for index in range(count):
            who = f"d-{uuid.uuid4().hex[:8]}"
            body: dict[str, Any] = {
                "customerId": who, "email": f"{who}@example.com",
                "items": [{"menuItemId": "margherita", "quantity": 1 + index % 3}],
                "fulfilment": "pickup" if index % 2 else "delivery"}
            if index % 2 == 0:
                address = await http.post(f"{url['delivery']}/api/delivery-addresses", json={
                    "customerId": who, "line1": "2 Kale Road", "city": "Leeds",
                    "postcode": "LS1 4AP"})
                body["deliveryId"] = address.json()["deliveryId"]
            answer = await http.post(f"{orders_url}/api/orders", json=body)
            assert answer.status_code == 202, answer.text
            placed.append((answer.json()["orderId"], who))

        for order_id, who in placed:
            async def done(order_id: str = order_id) -> dict[str, Any] | None:
                answer = await http.get(f"{url['tracking']}/api/orders/{order_id}")
                document = answer.json() if answer.status_code == 200 else None
                ready = document and document["status"] == "completed" and document.get(
                    "loyaltyPoints") is not None
                return document if ready else None

            document = await eventually(done, timeout=60)
            points = (await http.get(f"{url['loyalty']}/api/loyalty/{who}")).json()
            assert points["points"] == int(document["value"]), "points awarded once"

            async def two_emails(who: str = who) -> list[Any]:
                mail = (await http.get(f"{url['notifications']}/api/mailbox",
                                       params={"to": f"{who}@example.com"})).json()
                return list(mail) if len(mail) >= 2 else []

            assert len(await eventually(two_emails)) == 2

        handled = []
        for kitchen in kitchens:
            health = (await http.get(f"{kitchen.url}/api/health")).json()
            handled.append(health["services"]["kitchen"]["queues"]["open-ticket"]["handled"])
        assert sum(handled) == count, "every ticket opened once, by one of the two kitchens"

    prepared = "pizza.events.kitchen.OrderPrepared.v1"
    nc = await nats.connect(nats_url, **connect_options(Path(kitchens[0].env["PIZZA_HOME"])))
    info = await nc.jetstream().stream_info("PIZZA_EVENTS", subjects_filter=prepared)
    await nc.close()
    assert (info.state.subjects or {}).get(prepared) == count, "no order was cooked twice"
