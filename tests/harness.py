"""Run services in-process for tests: MemoryTransport (unit) or a real JetStream server.

    async with running([orders.create], tmp_path) as system:
        response = await system.http.post("/api/orders", json=...)
        await system.settle()               # until queues are empty and outboxes drained
        system.published("pizza.events.orders.")   # envelopes that went out

A service is given made (``orders.create(settings)``) or as its factory
(``orders.create``), which is then called with ``config.settings()`` as they are when
``running`` starts. ``system.http`` signs in as the operator;
``system.signed_in(role, customer)`` gives the headers of another person (tokens from the
test's own issuer under ``tmp_path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from pizza import config
from pizza.eventing import Event, Service
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.host import Runtime
from pizza.eventing.transport.base import Outgoing, Transport
from pizza.eventing.transport.memory import MemoryTransport
from pizza.web import access, errors
from pizza.web.identity import LocalIssuer, LocalVerifier


@dataclass
class System:
    runtime: Runtime
    transport: Transport
    http: httpx.AsyncClient
    issuer: LocalIssuer

    def signed_in(self, role: str, customer: str | None = None) -> dict[str, str]:
        """Headers that sign a request in as ``role`` (a customer: as ``customer``)."""
        return {"Authorization": f"Bearer {self.issuer.issue(role, customer)}"}

    def service(self, name: str) -> Any:
        """The running service ``name`` (as its factory made it)."""
        return self.runtime.hosts[name].service

    def published(self, prefix: str) -> list[dict]:
        """Envelopes stored on the bus whose subject starts with ``prefix`` (memory only)."""
        assert isinstance(self.transport, MemoryTransport)
        return [orjson.loads(data) for subject, data, _h in self.transport.messages(prefix)
                if subject.startswith(prefix)]

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until every outbox is empty and every queue has nothing waiting or in
        flight, on two looks in a row (the hosts are looked at one after another, so a
        message may move to one already looked at)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        while loop.time() < deadline:
            busy = 0
            for host in self.runtime.hosts.values():
                busy += await host.relay.backlog()
                for consumer in host.consumers:
                    if consumer.queue is not None:
                        waiting, unacked = await consumer.queue.pending()
                        busy += waiting + unacked
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:
                await asyncio.sleep(0.02)  # commit callbacks (read-model signals) run
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("the system did not settle")


def envelope(message: Event, time: str | None = None) -> Envelope:
    """A message as its producer would put it on the bus (optionally stamped ``time``)."""
    info = message.info
    meta = Metadata(type=info.type, version=info.version, source=info.owner)
    if time is not None:
        meta.time = time
    return Envelope(meta, message.to_data())


async def deliver(system: System, env: Envelope, nats_id: str | None = None) -> None:
    """Put an event's envelope on the bus and wait until it is handled. Another
    ``nats_id`` gets past the broker's dedup, as a redelivery does."""
    meta = env.metadata
    subject = f"pizza.events.{meta.source}.{meta.type}.v{meta.version}"
    await system.transport.publish([Outgoing(nats_id or meta.id, subject, env.encode())])
    await system.settle()


async def publish(system: System, message: Event) -> Envelope:
    env = envelope(message)
    await deliver(system, env)
    return env


async def eventually(check: Callable[[], Any], timeout: float = 3.0,
                     what: str = "it") -> Any:
    """Until ``check()`` (plain or awaitable) is truthy; its value, or AssertionError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        await asyncio.sleep(0.02)


Made = Service | Callable[[config.Settings], Service]


def made(services: Sequence[Made]) -> list[Service]:
    """Each service, made by its factory from the settings of now if it is one."""
    return [s if isinstance(s, Service) else s(config.settings()) for s in services]


def app_for(services: Sequence[Service], issuer: LocalIssuer,
            runtime: Runtime | None = None) -> FastAPI:
    """An app serving the services' routes, each reaching its host in ``runtime``."""
    app = FastAPI()
    app.state.runtime = runtime
    errors.install(app)
    access.install(app, LocalVerifier(issuer))
    for service in services:
        if service.router is not None:
            app.include_router(service.router)
    return app


@contextlib.asynccontextmanager
async def running(services: Sequence[Made], tmp_path: Path,
                  transport: Transport | None = None,
                  database_url: str | None = None) -> AsyncIterator[System]:
    services = made(services)
    transport = transport or MemoryTransport()
    runtime = Runtime(services, transport=transport,
                      database_url=database_url or None, relay_interval=0.05)
    if database_url is None:
        import os

        os.environ["PIZZA_HOME"] = str(tmp_path)
    await runtime.start()
    issuer = LocalIssuer(tmp_path / "identity")
    app = app_for(services, issuer, runtime)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test",
        headers={"Authorization": f"Bearer {issuer.issue('operator')}"})
    try:
        yield System(runtime, transport, client, issuer)
    finally:
        await client.aclose()
        await runtime.stop()
