"""A real NATS cluster on this machine: three ``nats-server`` processes with JetStream.

Each node is the project's own ``EmbeddedNats`` (the venv's ``nats-server``, a child that
dies with us) on a free client port, with a store directory of its own, a name
(``n1``, ``n2``, ...) and routes to the others on free route ports. Clients are admitted
by the ``authorization`` block given (``permissions.broker_users`` renders it, the same
as the embedded broker's), so each service connects on its own credentials; the route
port listens on 127.0.0.1 only and has no authorization (local nodes only).

Used by the torture suite's ``cluster`` scenario and by the tests: a node can be killed
(SIGKILL) and started again on the same ports and store, and the leader of a stream found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import nats

from pizza.eventing.transport.credentials import Credentials
from pizza.eventing.transport.embedded import EmbeddedNats, free_port


class NatsCluster:
    """``size`` clustered nats-server nodes under ``directory`` (see the module)."""

    def __init__(self, directory: Path, size: int = 3, *, authorization: str | None = None,
                 credentials: Credentials | None = None) -> None:
        self.directory = Path(directory)
        self.credentials = credentials
        self.name = f"pizza-{uuid.uuid4().hex[:6]}"
        routes = {f"n{i}": free_port() for i in range(1, size + 1)}
        self.nodes: dict[str, EmbeddedNats] = {}
        for name, route in routes.items():
            others = ", ".join(f"nats-route://127.0.0.1:{port}"
                               for other, port in routes.items() if other != name)
            self.nodes[name] = EmbeddedNats(
                self.directory / name, authorization=authorization, credentials=credentials,
                extra_config=(f"server_name: {name}\n"
                              f"cluster {{\n  name: {self.name}\n"
                              f"  listen: 127.0.0.1:{route}\n"
                              f"  routes: [{others}]\n}}\n"))

    @property
    def url(self) -> str:
        """Every node's URL, separated by commas: what PIZZA_NATS_URL takes."""
        return ",".join(node.url for node in self.nodes.values())

    async def start(self) -> None:
        """Start every node at once (JetStream answers only once a quorum has formed)."""
        try:
            await asyncio.gather(*(node.start() for node in self.nodes.values()))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes.values()))

    async def kill(self, name: str) -> None:
        """SIGKILL one node: a crash, its store left as it was."""
        await self.nodes[name].kill()

    async def restart(self, name: str) -> None:
        """Start a node again on its ports and store; back once JetStream answers on it."""
        await self.nodes[name].start()

    async def _connect(self) -> nats.NATS:
        options: dict[str, Any] = (self.credentials.connect_options()
                                   if self.credentials else {})
        running = [node.url for node in self.nodes.values() if node.running]
        return await nats.connect(running, connect_timeout=3, allow_reconnect=False,
                                  max_reconnect_attempts=1, **options)

    async def leader(self, stream: str) -> str:
        """The name of the node that leads ``stream`` now (``n1``...)."""
        nc = await self._connect()
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        if info.cluster is None or not info.cluster.leader:
            raise RuntimeError(f"stream {stream} has no leader")
        return str(info.cluster.leader)

    async def replicas(self, stream: str) -> int:
        """How many nodes hold ``stream`` (the leader and its replicas)."""
        nc = await self._connect()
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        return 1 + len((info.cluster.replicas or []) if info.cluster else [])

    async def wait_current(self, stream: str, timeout: float = 60.0) -> float:
        """Wait until ``stream`` has a leader and every replica is current (caught up);
        the seconds that took."""
        started = time.monotonic()
        last: object = None
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):
                nc = await self._connect()
                try:
                    info = await nc.jetstream().stream_info(stream)
                finally:
                    await nc.close()
                cluster = info.cluster
                last = cluster
                if (cluster is not None and cluster.leader and cluster.replicas
                        and len(cluster.replicas) == len(self.nodes) - 1
                        and all(r.current and not r.offline for r in cluster.replicas)):
                    return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise TimeoutError(f"stream {stream}: replicas not current after {timeout:.0f}s "
                           f"({last!r})")

    async def __aenter__(self) -> NatsCluster:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
