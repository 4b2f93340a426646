"""Hostile messages on every subject a queue consumes: what a buggy or malicious producer
could put on the bus. None of them is about a real order (their ids are made up), so any
of them left unhandled is a miss, and none of them may hold up the real orders.

Kinds: garbage bytes, JSON that is not an envelope, an envelope without metadata, a
version no handler knows, a 100 KB id, every field of the wrong type, metadata that is not
metadata, and (for commands) a `replyTo` outside our reply subjects.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from pizza.eventing.catalog import subject_matches
from pizza.eventing.service import queue_name
from pizza.torture.audit import connect, fingerprint, queues

HUGE = 100_000
BAD_REPLY_TO = ("pizza.events.orders.OrderConfirmed.v2", "_INBOX.torture",
                "$JS.API.STREAM.INFO.PIZZA_EVENTS", "pizza.commands.notifications.SendEmail.v1")


@dataclass
class Target:
    subject: str
    type: str
    version: int
    kind: str  # event, command or reply
    schema: dict[str, Any]
    queues: int  # how many queues take this subject: one dead letter expected from each


@dataclass
class Hostility:
    sent: int = 0
    expected: int = 0  # dead letters expected: one per queue that receives the message
    fingerprints: set[str] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=dict)


async def targets(nats_url: str, base_url: str) -> list[Target]:
    """Every subject some queue consumes, with the message declared on it (from the catalog)."""
    async with httpx.AsyncClient(timeout=10) as http:
        catalog = (await http.get(f"{base_url}/api/catalog")).raise_for_status().json()
    tapped = _tapped()
    taken = {name: filters for name, filters in (await queues(nats_url)).items()
             if name not in tapped}
    subjects = sorted({s.replace("*", "hostile").replace(">", "hostile")
                       for filters in taken.values() for s in filters})
    found = []
    for subject in subjects:
        entry = next((e for e in catalog if e.get("subject") == subject), None)
        if entry is None and subject.startswith("pizza.replies."):
            entry = next((e for e in catalog if e.get("kind") == "reply"), None)
        if entry is None:
            tokens = subject.split(".")
            version = tokens[-1][1:] if tokens[-1][1:].isdigit() else "1"
            entry = {"type": tokens[-2], "version": int(version), "kind": "event", "schema": {}}
        count = sum(1 for filters in taken.values()
                    if any(subject_matches(f, subject) for f in filters))
        found.append(Target(subject, entry["type"], int(entry["version"]), entry["kind"],
                            entry.get("schema") or {}, count))
    return found


def _tapped() -> set[str]:
    """The queues services drain with their own code (``Service.taps``, e.g. tracking's
    journal): they record what they take and never dead-letter it, so no dead letter is
    expected from them."""
    from pizza.app import load

    return {queue_name(service.name, name) for service in load() for name in service.taps}


def _plausible(schema: dict[str, Any], name: str) -> Any:
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        return _plausible(options[0], name) if options else None
    kind = schema.get("type")
    if kind in ("number", "integer"):
        return 1
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind == "object" or "$ref" in schema:
        return {}
    if name in ("to", "from") or "email" in name.lower():
        return "hostile@example.com"
    return f"hostile-{uuid.uuid4().hex[:12]}"


def _wrong(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "string" or "enum" in schema or "const" in schema:
        return 12345
    if kind in ("number", "integer"):
        return "lots"
    if kind == "array":
        return "not-a-list"
    return ["not", "an", "object"]


def _data(target: Target) -> dict[str, Any]:
    properties = target.schema.get("properties", {})
    required = target.schema.get("required", list(properties))
    return {name: _plausible(properties.get(name, {}), name) for name in required}


def _envelope(target: Target, data: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    source = target.subject.split(".")[2] if target.kind == "event" else "torture"
    meta = {"id": str(uuid.uuid4()), "type": target.type, "version": target.version,
            "source": source, "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "correlationId": f"hostile-{uuid.uuid4().hex[:12]}", "causationId": None,
            "traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
            "replyTo": "pizza.replies.orders" if target.kind == "command" else None}
    meta.update(metadata)
    return {"metadata": meta, "data": data}


def _huge(target: Target) -> dict[str, Any]:
    data = _data(target)
    strings = [n for n, v in data.items() if isinstance(v, str)]
    name = next((n for n in strings if n.lower().endswith("id")), strings[0] if strings else "x")
    data[name] = "h" * HUGE
    return _envelope(target, data)


def _wrong_types(target: Target) -> dict[str, Any]:
    properties = target.schema.get("properties", {})
    data = {name: _wrong(properties.get(name, {})) for name in _data(target)}
    return _envelope(target, data or {"orderId": 12345})


KINDS: dict[str, Callable[[Target, int], bytes | dict[str, Any] | list[Any]]] = {
    "garbage": lambda t, n: os.urandom(48) + n.to_bytes(4, "big"),
    "not-an-envelope": lambda t, n: [n, "pizza", None, {"orderId": n}],
    "no-metadata": lambda t, n: {"data": _data(t), "n": n},
    "wrong-version": lambda t, n: _envelope(t, _data(t), version=t.version + 90 + n % 5),
    "huge-field": lambda t, n: _huge(t),
    "wrong-types": lambda t, n: _wrong_types(t),
    "bad-metadata": lambda t, n: _envelope(t, _data(t), id=f"not-a-uuid-{n}", time="yesterday",
                                           version="one"),
}
COMMAND_KINDS = {"bad-reply-to": lambda t, n: _envelope(
    t, _data(t), replyTo=BAD_REPLY_TO[n % len(BAD_REPLY_TO)])}


def messages(found: list[Target], count: int) -> list[tuple[Target, str, bytes]]:
    """``count`` hostile messages, spread over the subjects and the kinds."""
    plan: list[tuple[Target, str]] = []
    for target in found:
        kinds = list(KINDS) + (list(COMMAND_KINDS) if target.kind == "command" else [])
        plan += [(target, kind) for kind in kinds]
    made = []
    for number, (target, kind) in zip(range(count), itertools.cycle(plan), strict=False):
        build = KINDS.get(kind) or COMMAND_KINDS[kind]
        body = build(target, number)
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        made.append((target, kind, payload))
    return made


async def send(nats_url: str, made: list[tuple[Target, str, bytes]], seconds: float,
               hostility: Hostility) -> None:
    """Publish them evenly over ``seconds`` while real orders flow."""
    nc = await connect(nats_url)
    js = nc.jetstream()
    pause = seconds / max(1, len(made))
    try:
        for target, kind, payload in made:
            await js.publish(target.subject, payload,
                             headers={"Nats-Msg-Id": f"hostile-{uuid.uuid4()}"}, timeout=10)
            hostility.sent += 1
            hostility.expected += target.queues
            hostility.fingerprints.add(fingerprint(payload))
            hostility.kinds[kind] = hostility.kinds.get(kind, 0) + 1
            await asyncio.sleep(pause)
    finally:
        await nc.close()
