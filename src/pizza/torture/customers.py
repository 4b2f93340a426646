"""Customers placing orders through the HTTP API, as a shop front would.

Each order has a customer (and email address) of its own, so its points and emails can be
told apart from every other order's. A request that fails in a way a retry may fix (no
answer, a timeout, 5xx, 503 with Retry-After) is retried with the same `Idempotency-Key`,
on the next orders process: the customer pressed "order" once, so at most one order may
come of it. A 4xx other than 429 is the shop refusing: recorded with its error code.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from pizza.web.identity import LocalIssuer

RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Placed:
    order_id: str
    customer: str
    email: str
    fulfilment: str
    accepted_at: float


@dataclass
class Load:
    placed: list[Placed] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> orders
    retries: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0


class Refused(Exception):
    pass


class Customers:
    """``clients`` concurrent customers placing ``total`` orders, paced at ``rate``/s."""

    def __init__(self, order_urls: Sequence[str], delivery_url: str, run: str, *,
                 issuer: LocalIssuer, clients: int = 32, patience: float = 90.0) -> None:
        self.issuer = issuer  # each customer signs in as themselves
        self.order_urls = list(order_urls)
        self.delivery_url = delivery_url
        self.run = run
        self.clients = clients
        self.patience = patience
        self._next_url = itertools.cycle(range(len(self.order_urls)))
        self.load = Load()

    async def place_all(self, total: int, rate: float | None = None) -> Load:
        load = self.load
        load.started_at = time.monotonic()
        numbers = iter(range(total))
        limits = httpx.Limits(max_connections=self.clients * 2,
                              max_keepalive_connections=self.clients * 2)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:
            async def customer() -> None:
                for number in numbers:
                    if rate:
                        delay = load.started_at + number / rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    try:
                        load.placed.append(await self._order(http, number))
                    except Refused as refusal:
                        load.refused[str(refusal)] += 1

            await asyncio.gather(*(customer() for _ in range(self.clients)))
        load.ended_at = time.monotonic()
        return load

    async def _order(self, http: httpx.AsyncClient, number: int) -> Placed:
        who = f"t{self.run}-{number}"
        email = f"{who}@example.com"
        pickup = number % 2 == 1
        signed_in = {"Authorization": f"Bearer {self.issuer.issue('customer', who)}"}
        body: dict[str, Any] = {
            "customerId": who, "email": email,
            "items": [{"menuItemId": "margherita", "quantity": 1 + number % 3}],
            "fulfilment": "pickup" if pickup else "delivery"}
        if not pickup:
            address = await self._post(http, lambda: self.delivery_url,
                                       "/api/delivery-addresses", {
                                           "customerId": who, "line1": "1 Basil Street",
                                           "city": "London", "postcode": "E1 6AN"}, 201,
                                       signed_in)
            body["deliveryId"] = address["deliveryId"]
        answer = await self._post(http, self._orders_url, "/api/orders", body, 202,
                                  {**signed_in, "Idempotency-Key": str(uuid.uuid4())})
        return Placed(str(answer["orderId"]), who, email, body["fulfilment"], time.monotonic())

    def _orders_url(self) -> str:
        return self.order_urls[next(self._next_url)]

    async def _post(self, http: httpx.AsyncClient, base: Any, path: str,
                    body: dict[str, Any], expected: int,
                    headers: dict[str, str]) -> dict[str, Any]:
        deadline = time.monotonic() + self.patience
        pause = 0.2
        last = ""
        while True:
            try:
                response = await http.post(base() + path, json=body, headers=headers)
            except httpx.TransportError as error:
                last = f"{path}: {type(error).__name__}"
            else:
                if response.status_code == expected:
                    return dict(response.json())
                last = f"{path}: {response.status_code} {_code(response)}"
                if response.status_code not in RETRYABLE:
                    raise Refused(last)
            if time.monotonic() > deadline:
                raise Refused(f"{last} (gave up after {self.patience:.0f}s)")
            self.load.retries += 1
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)


def _code(response: httpx.Response) -> str:
    """The contract's error code, or what the answer was instead (truncated)."""
    try:
        document = response.json()
        return str(document["error"]["code"])[:60]
    except (ValueError, KeyError, TypeError):
        content = response.headers.get("content-type", "?").split(";")[0]
        return f"not the error shape ({content})"
