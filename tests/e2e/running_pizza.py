"""The real system started as a user would (`pizza up`, `pizza serve`), talked to over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats

from pizza.cli_common import connect_options
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.embedded import free_port as free_port  # for the tests

PIZZA = str(Path(sys.executable).parent / "pizza")


class Process:
    """A `pizza ...` child process with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, url: str) -> None:
        self.args, self.env, self.log, self.url = args, env, log, url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([PIZZA, *self.args], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"pizza {' '.join(self.args)} exited:\n{self.tail()}")
                try:
                    if (await client.get("/api/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"pizza {' '.join(self.args)} not healthy:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def environment(home: Path, **extra: str) -> dict[str, str]:
    # The caller's PIZZA_* settings stay out, but for how `pizza up` runs: PIZZA_PROCESSES=1
    # runs every test (or scenario) against one process instead of one per service.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIZZA_") or k == "PIZZA_PROCESSES"}
    env.update({"PIZZA_HOME": str(home), "PIZZA_LOG_LEVEL": "WARNING", **extra})
    return env


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                     interval: float = 0.1) -> Any:
    """Poll until ``check`` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached in {timeout}s; last value: {last!r}")


class Pizza:
    """A running system: its base URL, an HTTP client, and its broker."""

    def __init__(self, process: Process, client: httpx.AsyncClient,
                 broker: EmbeddedNats | None) -> None:
        self.process = process
        self.http = client
        self.broker = broker

    async def nats_url(self) -> str:
        return str((await self.http.get("/api/health")).json()["nats"])

    async def connect(self) -> nats.NATS:
        """A raw connection to the system's broker, as the tools make one: as the operator
        of its PIZZA_HOME when the broker is `pizza up`'s own (it admits only its users)."""
        home = Path(self.process.env["PIZZA_HOME"])
        return await nats.connect(await self.nats_url(), **connect_options(home))

    async def stream_messages(self, stream: str = "PIZZA_EVENTS") -> int:
        nc = await self.connect()
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    async def last_seq(self, stream: str) -> int:
        nc = await self.connect()
        try:
            return int((await nc.jetstream().stream_info(stream)).state.last_seq)
        finally:
            await nc.close()

    async def messages_after(self, stream: str, seq: int) -> list[bytes]:
        """The payloads a stream stored after sequence ``seq``, in order."""
        nc = await self.connect()
        try:
            js = nc.jetstream()
            last = int((await js.stream_info(stream)).state.last_seq)
            return [(await js.get_msg(stream, n)).data or b"" for n in range(seq + 1, last + 1)]
        finally:
            await nc.close()

    async def settled(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until nothing waits in any queue, in flight or in any outbox, on two looks in a
        row: every message published so far has been taken and acknowledged (or dead-
        lettered, which ``deadLettered`` shows). The last health report."""
        calm: list[dict[str, Any]] = []

        async def twice_quiet() -> bool:
            health = (await self.http.get("/api/health")).json()
            quiet = all(service["outboxBacklog"] == 0 and all(
                queue["waiting"] == 0 and queue["inFlight"] == 0
                for queue in service["queues"].values())
                for service in health["services"].values())
            calm[:] = [*calm, health] if quiet else []
            return len(calm) >= 2

        await eventually(twice_quiet, timeout, interval=0.2)
        return calm[-1]

    async def delivery_address(self, customer: str) -> str:
        response = await self.http.post("/api/delivery-addresses", json={
            "customerId": customer, "line1": "1 Basil Street", "city": "London",
            "postcode": "E1 6AN"})
        assert response.status_code == 201, response.text
        return str(response.json()["deliveryId"])

    async def place(self, customer: str, *, pickup: bool = False,
                    items: list[dict[str, Any]] | None = None, **headers: str) -> str:
        body: dict[str, Any] = {
            "customerId": customer, "email": f"{customer}@example.com",
            "items": items or [{"menuItemId": "margherita", "quantity": 2}],
            "fulfilment": "pickup" if pickup else "delivery"}
        if not pickup:
            body["deliveryId"] = await self.delivery_address(customer)
        response = await self.http.post("/api/orders", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["orderId"])

    async def order(self, order_id: str) -> dict[str, Any] | None:
        response = await self.http.get(f"/api/orders/{order_id}")
        return response.json() if response.status_code == 200 else None

    async def reaches(self, order_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            document = await self.order(order_id)
            return document if document and document["status"] == status else None

        return dict(await eventually(check, timeout))

    async def mailbox(self, to: str) -> list[dict[str, Any]]:
        return list((await self.http.get("/api/mailbox", params={"to": to})).json())
