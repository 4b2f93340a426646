"""Drive orders through the HTTP API and measure how long each status takes to show.

Used by ``pizza simulate`` and by the end-to-end benchmark. Every order is placed with
``POST /api/orders`` at a fixed offered rate; its read model is followed through the
Server-Sent Events stream, and the time from the 202 to each status is recorded.

``run_clients`` is the other shape of load, for the benchmark's ``orders`` scenario: a
fixed number of callers, each placing its next order as soon as the last one was
accepted, following none (the benchmark watches completions on the system's side).
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


def _order_body(customer: str, pickup: bool, delivery_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerId": customer, "email": f"{customer}@example.com",
        "items": [{"menuItemId": "margherita", "quantity": random.randint(1, 3)}],
        "fulfilment": "pickup" if pickup else "delivery",
    }
    if not pickup:
        body["deliveryId"] = delivery_id
    return body


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
            body = _order_body(customer, pickup, addresses[customer])
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


# -- a fixed number of callers, as fast as the system answers ------------------------------


@dataclass
class Placed:
    customer: str
    pickup: bool
    order_id: str | None = None
    request_seconds: float = 0.0
    error: str | None = None


@dataclass
class ClientsResult:
    placed: list[Placed]
    wall_seconds: float  # from the first request to the last answer

    @property
    def accepted(self) -> list[Placed]:
        return [p for p in self.placed if p.order_id]

    @property
    def errors(self) -> list[str]:
        return [p.error for p in self.placed if p.error]

    def request_percentile(self, q: float) -> float | None:
        return _percentile(sorted(p.request_seconds for p in self.accepted), q)


async def register_customers(base_url: str, count: int,
                             headers: dict[str, str] | None = None) -> dict[str, str]:
    """``count`` new customers, each with a delivery address: {customerId: deliveryId}."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
        customers = [f"load-{uuid.uuid4().hex[:12]}" for _ in range(max(1, count))]
        ids = await asyncio.gather(*(_register_address(client, c) for c in customers))
        return dict(zip(customers, ids, strict=True))


async def run_clients(base_url: str, *, orders: int, clients: int,
                      customers: dict[str, str], first_pickup: bool = False,
                      headers: dict[str, str] | None = None) -> ClientsResult:
    """Place ``orders`` orders from ``clients`` concurrent callers (one connection each),
    every caller placing its next order once the last one was answered: every other
    order is for delivery, the rest for pickup (the first is for pickup if
    ``first_pickup``), spread evenly over ``customers`` (from
    :func:`register_customers`). Nothing is followed: returns what each POST answered."""
    names = list(customers)
    placed = [Placed(names[index % len(names)], pickup=(index % 2 == 1) != first_pickup)
              for index in range(orders)]
    todo = iter(placed)
    began = time.perf_counter()

    async def caller() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60,
                                     headers=headers) as client:
            for one in todo:  # shared: each caller takes the next order not yet placed
                body = _order_body(one.customer, one.pickup, customers[one.customer])
                sent = time.perf_counter()
                try:
                    response = await client.post("/api/orders", json=body)
                except httpx.HTTPError as error:
                    one.error = f"POST failed: {error!r}"[:300]
                    continue
                one.request_seconds = time.perf_counter() - sent
                if response.status_code == 202:
                    one.order_id = str(response.json()["orderId"])
                else:
                    one.error = f"POST answered {response.status_code}: {response.text[:200]}"

    await asyncio.gather(*(caller() for _ in range(max(1, clients))))
    return ClientsResult(placed, time.perf_counter() - began)
