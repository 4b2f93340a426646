"""Counting what happened, from the outside: the HTTP API and the streams on the bus.

- the read model (`GET /api/orders/{id}`) says where each order is;
- `GET /api/mailbox` shows each email the SMTP sink received (one address per order);
- `GET /api/loyalty/{customer}` shows the points (one customer per order);
- `PIZZA_EVENTS` shows which orders were confirmed, and how often the kitchen cooked each;
- `PIZZA_DEADLETTERS` shows what the queues gave up on, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from pizza.eventing.settings import nats_servers
from pizza.eventing.transport.credentials import Credentials
from pizza.torture.customers import Placed
from pizza.torture.ledger import Ledger

TERMINAL = ("completed", "cancelled")
STREAMS = ("PIZZA_EVENTS", "PIZZA_COMMANDS", "PIZZA_REPLIES")
DEAD_LETTERS = "PIZZA_DEADLETTERS"
DEAD_REASON = "Pizza-Dead-Reason"
HOSTILE = "hostile-"  # the correlation id of every hostile message starts so


def fingerprint(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# Who the suite is on a broker that admits only its users (the cluster scenario's), by URL.
CREDENTIALS: dict[str, Credentials] = {}


async def connect(url: str) -> nats.NATS:
    """The suite's own connection to a broker it started (one server or a cluster's)."""
    known = CREDENTIALS.get(url)
    return await nats.connect(nats_servers(url), connect_timeout=3, max_reconnect_attempts=3,
                              allow_reconnect=True,
                              **(known.connect_options() if known else {}))


async def read_stream(js: Any, stream: str, subject: str, attempts: int = 10) -> list[Any]:
    """Every message stored on ``subject`` (wildcards allowed), oldest first.

    A cluster answers 503 or late for a moment (a new consumer's leader, an election after
    a node came back): the whole read is tried again, up to ``attempts`` times, rather
    than counting what it did not see as lost."""
    for attempt in range(1, attempts + 1):
        try:
            messages, complete = await _read_stream_once(js, stream, subject)
        except (ServiceUnavailableError, NoRespondersError, NatsTimeout, TimeoutError):
            if attempt == attempts:
                raise
        else:
            if complete or attempt == attempts:
                return messages
        await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def _read_stream_once(js: Any, stream: str, subject: str) -> tuple[list[Any], bool]:
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
    except NotFoundError:
        return [], True
    total = sum((info.state.subjects or {}).values())
    if not total:
        return [], True
    sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30))
    messages: list[Any] = []
    try:
        while len(messages) < total:
            try:
                messages += await sub.fetch(min(500, total - len(messages)), timeout=5)
            except TimeoutError:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return messages, len(messages) >= total


async def queues(nats_url: str) -> dict[str, list[str]]:
    """Each durable queue on the bus and the subjects it takes."""
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        found: dict[str, list[str]] = {}
        for stream in STREAMS:
            try:
                consumers = await js.consumers_info(stream)
            except NotFoundError:
                continue
            for consumer in consumers:
                config = consumer.config
                if not config.durable_name:
                    continue
                subjects = list(config.filter_subjects or []) or [config.filter_subject or ">"]
                found[config.durable_name] = subjects
        return found
    finally:
        await nc.close()


@dataclass
class DeadLetter:
    subject: str
    reason: str
    fingerprint: str
    correlation: str  # metadata.correlationId, if the payload has one


def _correlation(raw: bytes) -> str:
    try:
        return str(orjson.loads(raw)["metadata"]["correlationId"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""


@dataclass
class BusFacts:
    confirmed: set[str] = field(default_factory=set)
    prepared: dict[str, set[str]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _order_id(raw: bytes) -> tuple[str | None, str | None]:
    try:
        document = orjson.loads(raw)
        return str(document["data"]["orderId"]), str(document["metadata"]["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None, None


async def read_bus(nats_url: str) -> BusFacts:
    facts = BusFacts()
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        confirmed = "pizza.events.orders.OrderConfirmed.>"
        for message in await read_stream(js, "PIZZA_EVENTS", confirmed):
            order_id, _ = _order_id(message.data)
            if order_id:
                facts.confirmed.add(order_id)
        prepared = "pizza.events.kitchen.OrderPrepared.>"
        for message in await read_stream(js, "PIZZA_EVENTS", prepared):
            order_id, message_id = _order_id(message.data)
            if order_id and message_id:
                facts.prepared.setdefault(order_id, set()).add(message_id)
        for message in await read_stream(js, DEAD_LETTERS, ">"):
            facts.dead_letters.append(DeadLetter(
                message.subject, (message.headers or {}).get(DEAD_REASON, "?"),
                fingerprint(message.data), _correlation(message.data)))
        return facts
    finally:
        await nc.close()


async def dead_letter_count(nats_url: str) -> int:
    nc = await connect(nats_url)
    try:
        try:
            info = await nc.jetstream().stream_info(DEAD_LETTERS)
        except NotFoundError:
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()


async def _get_all(http: httpx.AsyncClient, urls: Iterable[str], unanswered: Any,
                   limit: int = 16) -> list[Any]:
    """GET each URL, ``limit`` at a time; ``unanswered`` for one that keeps failing."""
    gate = asyncio.Semaphore(limit)

    async def one(url: str) -> Any:
        async with gate:
            try:
                return await _get_json(http, url)
            except RuntimeError:
                return unanswered

    return await asyncio.gather(*(one(url) for url in urls))


async def _get_json(http: httpx.AsyncClient, url: str, **params: str) -> Any:
    """The JSON answer, None for 404; a failing service is asked again a few times."""
    for attempt in range(5):
        try:
            response = await http.get(url, params=params)
        except httpx.HTTPError:
            await asyncio.sleep(0.5 * (attempt + 1))
            continue
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            return response.json()
        await asyncio.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"GET {url} keeps failing")


async def read_models(http: httpx.AsyncClient, tracking: str, ids: Sequence[str]
                      ) -> dict[str, dict[str, Any] | None]:
    documents = await _get_all(http, [f"{tracking}/api/orders/{i}" for i in ids],
                               {"status": "(the read model did not answer)"})
    return dict(zip(ids, documents, strict=True))


async def mailbox(http: httpx.AsyncClient, notifications: str) -> dict[str, Counter[str]]:
    """Address -> how many emails of each subject it received."""
    letters = await _get_json(http, f"{notifications}/api/mailbox") or []
    boxes: dict[str, Counter[str]] = {}
    for letter in letters:
        boxes.setdefault(str(letter.get("to")), Counter())[str(letter.get("subject"))] += 1
    return boxes


async def points(http: httpx.AsyncClient, loyalty: str, customers: Sequence[str]
                 ) -> dict[str, int]:
    answers = await _get_all(http, [f"{loyalty}/api/loyalty/{c}" for c in customers],
                             {"points": -1})
    return {c: int((a or {}).get("points", 0)) for c, a in zip(customers, answers, strict=True)}


def _settled(document: dict[str, Any] | None, box: Counter[str] | None) -> bool:
    if not document:
        return False
    if document.get("status") == "completed":
        return document.get("loyaltyPoints") is not None and len(box or ()) >= 2
    return document.get("status") == "cancelled" and len(box or ()) >= 1


async def settle(urls: dict[str, str], operator: dict[str, str], placed: Sequence[Placed],
                 limit: float,
                 also: Callable[[], Awaitable[bool]] | None = None) -> float | None:
    """Wait until every accepted order is terminal with its points and emails (and ``also``
    holds); the seconds that took, or None if ``limit`` passed first."""
    started = time.monotonic()
    pending = {p.order_id: p for p in placed}
    async with httpx.AsyncClient(timeout=10, headers=operator) as http:
        while time.monotonic() - started < limit:
            try:  # one mailbox read, then only orders that have mail (light on tracking)
                boxes = await mailbox(http, urls["notifications"])
                candidates = [i for i, p in pending.items() if boxes.get(p.email)]
                documents = await read_models(http, urls["tracking"], candidates)
            except RuntimeError:
                documents, boxes = {}, {}
            for order_id, document in documents.items():
                if _settled(document, boxes.get(pending[order_id].email)):
                    del pending[order_id]
            if not pending and (also is None or await also()):
                return time.monotonic() - started
            await asyncio.sleep(1.0)
    return None


async def account(ledger: Ledger, urls: dict[str, str], operator: dict[str, str],
                  nats_url: str, placed: Sequence[Placed], hostile: set[str]) -> None:
    """Fill the ledger from what the system and the bus show now (as the operator)."""
    facts = await read_bus(nats_url)
    async with httpx.AsyncClient(timeout=10, headers=operator) as http:
        documents = await read_models(http, urls["tracking"], [p.order_id for p in placed])
        boxes = await mailbox(http, urls["notifications"])
        balance = await points(http, urls["loyalty"], [p.customer for p in placed])
    for order in placed:
        document = documents[order.order_id]
        box = boxes.get(order.email, Counter())
        if any(count > 1 for count in box.values()):
            ledger.duplicate_emails += 1
        if len(facts.prepared.get(order.order_id, ())) > 1:
            ledger.duplicate_tickets += 1
        status = (document or {}).get("status")
        earned = int(float((document or {}).get("value") or 0)) if status == "completed" else 0
        if balance[order.customer] > earned:
            ledger.duplicate_points += 1
        if document is None:
            if order.order_id in facts.confirmed:
                ledger.stuck["confirmed, unknown to the read model"] += 1
            else:
                ledger.lost.append(order.order_id)
        elif status == "completed":
            ledger.completed += 1
            if balance[order.customer] < 0:
                ledger.stuck["completed, loyalty did not answer"] += 1
            elif balance[order.customer] < earned or document.get("loyaltyPoints") is None:
                ledger.stuck["completed, points missing"] += 1
            elif len(box) < 2:
                ledger.stuck[f"completed, {len(box)} of 2 emails"] += 1
        elif status == "cancelled":
            ledger.cancelled += 1
            if not box:
                ledger.stuck["cancelled, no email"] += 1
        else:
            ledger.stuck[str(status)] += 1
    hostile_seen: set[tuple[str, str]] = set()
    for letter in facts.dead_letters:
        ledger.dead_lettered += 1
        ledger.dead_reasons[letter.reason] += 1
        if letter.fingerprint in hostile:
            hostile_seen.add((letter.subject, letter.fingerprint))
        elif not letter.correlation.startswith(HOSTILE):  # not what a hostile one caused
            ledger.healthy_dead_lettered += 1
    ledger.hostile_dead_lettered = len(hostile_seen)
