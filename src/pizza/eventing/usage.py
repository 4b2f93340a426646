"""The live registry: which service produces and consumes which message versions.

Producers do not know their consumers, and that is the point, until a producer wants to
change or retire a version: then it must know whether anyone still reads it. At start
every service records its declaration in the broker's key-value bucket ``PIZZA_USAGE``
(its namespace's, ``Namespace.usage_bucket``, which the transport names; one key per
service, so every process and machine sees the same answer), and a producer asks
before it retires a version (``OrderConfirmed`` v1, see the orders service).

A declaration is the service's, not one process's: it stays while the service is merely
stopped (its durable queues still hold its messages), and changes when the service starts
with other subscriptions, or is forgotten on purpose (``pizza events forget``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any

import orjson

from pizza.eventing.envelope import utc_now
from pizza.eventing.namespace import DEFAULT
from pizza.eventing.service import Service
from pizza.eventing.transport.base import Transport

BUCKET = DEFAULT.usage_bucket  # the default namespace's


@dataclass(frozen=True)
class Declaration:
    service: str
    produces: frozenset[tuple[str, int]]
    consumes: frozenset[tuple[str, int]]
    host: str = ""
    pid: int = 0
    at: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps({
            "service": self.service,
            "produces": sorted(self.produces), "consumes": sorted(self.consumes),
            "host": self.host, "pid": self.pid, "at": self.at,
        })

    @classmethod
    def from_json(cls, raw: bytes) -> Declaration:
        doc: dict[str, Any] = orjson.loads(raw)
        return cls(doc["service"],
                   frozenset((t, int(v)) for t, v in doc.get("produces", [])),
                   frozenset((t, int(v)) for t, v in doc.get("consumes", [])),
                   doc.get("host", ""), int(doc.get("pid", 0)), doc.get("at", ""))


def declaration(service: Service) -> Declaration:
    produced = {m.info.key for m in (*service.publishes, *service.sends)}
    return Declaration(service.name, frozenset(produced), frozenset(service.consumes),
                       socket.gethostname(), os.getpid(), utc_now())


async def announce(transport: Transport, service: Service) -> None:
    await transport.kv_put(transport.namespace.usage_bucket, service.name,
                           declaration(service).to_json())


async def forget(transport: Transport, service_name: str) -> None:
    await transport.kv_delete(transport.namespace.usage_bucket, service_name)


async def declarations(transport: Transport) -> list[Declaration]:
    entries = await transport.kv_entries(transport.namespace.usage_bucket)
    return sorted((Declaration.from_json(raw) for raw in entries.values()),
                  key=lambda d: d.service)


async def consumers_of(transport: Transport, message_type: str,
                       version: int | None = None) -> dict[int, list[str]]:
    """Who consumes which version of a message type: {version: [services]}."""
    found: dict[int, list[str]] = {}
    for decl in await declarations(transport):
        for kind, v in decl.consumes:
            if kind == message_type and (version is None or v == version):
                found.setdefault(v, []).append(decl.service)
    return found


class UsageView:
    """A cached answer to "does anyone consume X vN?", refreshed in the background.

    Producers ask on their hot path (every order), so they read memory; a task re-reads
    the bucket every ``interval`` seconds. Until the first read it answers ``None``:
    unknown, and the caller should stay on the safe side.
    """

    def __init__(self, transport: Transport, interval: float = 2.0) -> None:
        self.transport = transport
        self.interval = interval
        self._consumed: dict[tuple[str, int], set[str]] | None = None
        self._task: asyncio.Task[None] | None = None

    def consumers(self, message_type: str, version: int) -> set[str] | None:
        if self._consumed is None:
            return None
        return self._consumed.get((message_type, version), set())

    async def refresh(self) -> None:
        consumed: dict[tuple[str, int], set[str]] = {}
        for decl in await declarations(self.transport):
            for key in decl.consumes:
                consumed.setdefault(key, set()).add(decl.service)
        self._consumed = consumed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-view")

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker away: keep the last answer
                pass
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
