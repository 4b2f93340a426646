"""Drive orders through the HTTP API and measure how long each status takes to show.

Used by ``pizza simulate`` and by the end-to-end benchmark. Every order is placed with
``POST /api/orders`` at a fixed offered rate; its read model is followed through the
Server-Sent Events stream, and the time from the 202 to each status is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

STATUSES = ("confirmed", "preparing", "prepared", "out-for-delivery", "ready-for-collection",
            "delivered", "collected", "completed")
FINAL = ("completed", "cancelled")


@dataclass
class OrderTrace:
    order_id: str | None = None
    accepted_at: float = 0.0
    request_seconds: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)  # status -> seconds after 202
    error: str | None = None


@dataclass
class LoadResult:
    offered_rate: float
    traces: list[OrderTrace]
    wall_seconds: float

    @property
    def accepted(self) -> int:
        return sum(1 for t in self.traces if t.order_id)

    @property
    def completed(self) -> int:
        return sum(1 for t in self.traces if "completed" in t.seen)

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.traces if t.error]

    def latencies(self, status: str) -> list[float]:
        return sorted(t.seen[status] for t in self.traces if status in t.seen)

    def percentiles(self, status: str) -> dict[str, float | None]:
        values = self.latencies(status)
        return {name: _percentile(values, q) for name, q in
                (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))}

    def completed_per_second(self) -> float:
        done = [t.accepted_at + t.seen["completed"] for t in self.traces
                if "completed" in t.seen]
        if len(done) < 2:
            return 0.0
        first = min(t.accepted_at for t in self.traces if t.order_id)
        return len(done) / max(1e-9, max(done) - first)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


async def _register_address(client: httpx.AsyncClient, customer: str) -> str:
    response = await client.post("/api/delivery-addresses", json={
        "customerId": customer, "line1": "1 Basil Street", "city": "London",
        "postcode": "E1 6AN"})
    response.raise_for_status()
    return str(response.json()["deliveryId"])


async def _follow(client: httpx.AsyncClient, trace: OrderTrace, deadline: float) -> None:
    """Read the order's SSE stream until it is final or the deadline passes."""
    assert trace.order_id is not None
    with contextlib.suppress(httpx.HTTPError, asyncio.TimeoutError):
        async with asyncio.timeout(max(0.1, deadline - time.perf_counter())):
            async with client.stream("GET", f"/api/orders/{trace.order_id}/stream",
                                     timeout=None) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    with contextlib.suppress(orjson.JSONDecodeError):
                        document = orjson.loads(line[5:].strip())
                        status = document.get("status") if isinstance(document, dict) else None
                        if status and status not in trace.seen:
                            trace.seen[status] = time.perf_counter() - trace.accepted_at
                        if status in FINAL:
                            return


async def run_load(base_url: str, *, orders: int, rate: float, pickup_share: float = 0.5,
                   follow_seconds: float = 60.0,
                   progress: Callable[[str, int], None] | None = None,
                   headers: dict[str, str] | None = None) -> LoadResult:
    """Place ``orders`` orders at ``rate`` per second and follow each to its end.
    ``headers`` sign the requests in (an operator's token: it acts for every customer)."""
    limits = httpx.Limits(max_connections=max(100, orders + 10),
                          max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30,
                                 headers=headers) as client:
        customers = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(max(1, min(orders, 50)))]
        addresses = {c: await _register_address(client, c) for c in customers}
        traces = [OrderTrace() for _ in range(orders)]
        followers: list[asyncio.Task[None]] = []
        start = time.perf_counter()

        async def place(trace: OrderTrace) -> None:
            customer = random.choice(customers)
            pickup = random.random() < pickup_share
            body: dict[str, Any] = {
                "customerId": customer, "email": f"{customer}@example.com",
                "items": [{"menuItemId": "margherita", "quantity": random.randint(1, 3)}],
                "fulfilment": "pickup" if pickup else "delivery",
            }
            if not pickup:
                body["deliveryId"] = addresses[customer]
            sent = time.perf_counter()
            try:
                response = await client.post("/api/orders", json=body)
            except httpx.HTTPError as error:
                trace.error = f"POST failed: {error!r}"
                return
            trace.accepted_at = time.perf_counter()
            trace.request_seconds = trace.accepted_at - sent
            if response.status_code != 202:
                trace.error = f"POST answered {response.status_code}: {response.text[:200]}"
                return
            trace.order_id = response.json()["orderId"]
            if progress:
                progress("accepted", 1)
            await _follow(client, trace, trace.accepted_at + follow_seconds)
            if progress:
                progress("finished", 1)

        for index, trace in enumerate(traces):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            followers.append(asyncio.create_task(place(trace)))
        await asyncio.gather(*followers)
        return LoadResult(rate, traces, time.perf_counter() - start)
