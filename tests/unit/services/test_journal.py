"""The journal (tracking/journal.py): every message on the bus, metadata only, for /events.

The tracking service runs on the in-memory bus; messages are put on its streams as their
producers would (events, a command with its replyTo, its answer, a dead letter), and the
journal is read through the operator's API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, update

from harness import System, eventually, running
from pizza.contracts.orders import Money, OrderConfirmedV2, OrderLine
from pizza.eventing.envelope import Envelope, Metadata
from pizza.eventing.transport.base import (
    DEAD_ATTEMPTS,
    DEAD_CONSUMER,
    DEAD_ERROR,
    DEAD_REASON,
    DEAD_SUBJECT,
    Outgoing,
)
from pizza.services.tracking import create as tracking
from pizza.services.tracking import journal
from pizza.services.tracking.tables import journal as journal_table

ORDER = "00000000-0000-4000-8000-00000000a001"
OTHER = "00000000-0000-4000-8000-00000000a002"
SECRET = "ada.lovelace@example.com"  # personal data in a payload: never in the journal


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with running([tracking], tmp_path) as running_system:
        yield running_system


def valid_data(kind: str, order: str) -> dict[str, Any]:
    """A payload the tracking service's own queues accept (else they dead-letter it)."""
    if kind == "OrderConfirmed":
        return OrderConfirmedV2(
            order_id=order, customer_id="c-1", fulfilment="pickup", delivery_id=None,
            order_value=Money(amount=9.5, currency="GBP"),
            items=[OrderLine(menu_item_id="margherita", name="Margherita", quantity=1,
                             unit_price=9.5)]).to_data()
    if kind == "OrderPrepared":
        return {"orderId": order, "fulfilment": "pickup", "deliveryId": None}
    return {"orderId": order}


def message(kind: str, source: str, order: str, *, cause: Metadata | None = None,
            time: str = "2026-11-30T12:00:00.000Z", version: int = 1,
            reply_to: str | None = None, data: dict[str, Any] | None = None) -> Envelope:
    meta = Metadata(type=kind, version=version, source=source, correlation_id=order,
                    causation_id=cause.id if cause else None, reply_to=reply_to)
    meta.time = time
    return Envelope(meta, data if data is not None else valid_data(kind, order))


def event_subject(env: Envelope) -> str:
    meta = env.metadata
    return f"pizza.events.{meta.source}.{meta.type}.v{meta.version}"


async def put(system: System, subject: str, payload: bytes, msg_id: str,
              headers: dict[str, str] | None = None) -> None:
    if headers is None:
        await system.transport.publish([Outgoing(msg_id, subject, payload)])
    else:
        await system.transport.dead_letter(subject, payload, {"Nats-Msg-Id": msg_id,
                                                              **headers})


async def put_event(system: System, env: Envelope, nats_id: str | None = None) -> None:
    await put(system, event_subject(env), env.encode(), nats_id or env.metadata.id)


async def events(system: System, **params: Any) -> list[dict[str, Any]]:
    response = await system.http.get("/api/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def journal_holds(system: System, count: int, **params: Any) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await events(system, **params)
        return found if len(found) >= count else None
    return await eventually(enough, what=f"{count} journal entries")


async def test_an_order_s_story_comes_from_every_stream_linked_cause_to_effect(
        system: System) -> None:
    confirmed = message("OrderConfirmed", "orders", ORDER, time="2026-11-30T12:00:00.000Z",
                        version=2)
    email = message("SendEmail", "orders", ORDER, time="2026-11-30T12:00:00.010Z",
                    reply_to="pizza.replies.orders",
                    data={"to": SECRET, "from": "shop@example.com", "subject": "Receipt",
                          "body": "Thank you"})
    sent = message("EmailSent", "notifications", ORDER, cause=email.metadata,
                   time="2026-11-30T12:00:00.250Z", data={"messageId": "m-1"})
    prepared = message("OrderPrepared", "kitchen", ORDER, time="2026-11-30T12:00:05.000Z")
    ready = message("OrderReadyForCollection", "pickup", ORDER, cause=prepared.metadata,
                    time="2026-11-30T12:00:05.120Z")
    await put_event(system, confirmed)
    await put(system, "pizza.commands.notifications.SendEmail.v1", email.encode(),
              email.metadata.id)
    await put(system, "pizza.replies.orders", sent.encode(), sent.metadata.id)
    await put_event(system, prepared)
    await put_event(system, ready)
    # The kitchen's queue gave up on the ready message: a dead letter, why in its headers.
    await put(system, "pizza.deadletters.kitchen.order-ready", ready.encode(),
              f"dead-kitchen-order-ready-{ready.metadata.id}-5",
              {DEAD_REASON: "handler-failed", DEAD_ERROR: f"boom {SECRET}",
               DEAD_ATTEMPTS: "5", DEAD_SUBJECT: event_subject(ready),
               DEAD_CONSUMER: "kitchen-order-ready"})
    await put_event(system, message("OrderConfirmed", "orders", OTHER, version=2))

    await journal_holds(system, 7)
    response = await system.http.get(f"/api/events/story/{ORDER}")
    assert response.status_code == 200
    assert SECRET not in response.text and "Receipt" not in response.text  # no data
    story = response.json()["messages"]

    assert [(m["kind"], m["type"], m["source"]) for m in story] == [
        ("event", "OrderConfirmed", "orders"),
        ("command", "SendEmail", "orders"),
        ("reply", "EmailSent", "notifications"),
        ("event", "OrderPrepared", "kitchen"),
        ("event", "OrderReadyForCollection", "pickup"),
        ("dead-letter", "OrderReadyForCollection", "kitchen"),
    ]
    by_type = {(m["kind"], m["type"]): m for m in story}
    answer = by_type[("reply", "EmailSent")]
    assert answer["causationId"] == email.metadata.id
    assert answer["subject"] == "pizza.replies.orders"
    assert by_type[("event", "OrderReadyForCollection")]["causationId"] == \
        prepared.metadata.id
    dead = by_type[("dead-letter", "OrderReadyForCollection")]
    assert dead["deadLetter"] == {"reason": "handler-failed",
                                  "consumer": "kitchen-order-ready"}
    assert dead["id"] == ready.metadata.id and dead["causationId"] == ready.metadata.id
    confirmed_entry = by_type[("event", "OrderConfirmed")]
    assert {key: confirmed_entry[key] for key in ("id", "version", "time", "correlationId",
                                                  "causationId")} == {
        "id": confirmed.metadata.id, "version": 2, "time": "2026-11-30T12:00:00.000Z",
        "correlationId": ORDER, "causationId": None}


async def test_a_redelivered_or_retried_message_is_one_entry(system: System) -> None:
    env = message("OrderPreparing", "kitchen", ORDER)
    await put_event(system, env)
    await journal_holds(system, 1)
    await put_event(system, env, nats_id=f"{env.metadata.id}-again")  # past the dedup
    await put(system, f"{event_subject(env)}.retry.tracking-order-preparing", env.encode(),
              f"{env.metadata.id}.retry.tracking-order-preparing.7")
    marker = message("OrderPrepared", "kitchen", ORDER)
    await put_event(system, marker)  # arrives after both copies on the same queue

    found = await journal_holds(system, 2)
    assert [e["type"] for e in found] == ["OrderPrepared", "OrderPreparing"]
    async with system.service("tracking").journals.current().db.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(journal_table))).scalar()
    assert rows == 2


async def test_the_list_filters_by_order_and_type_newest_first_and_pages(
        system: System) -> None:
    for i, kind in enumerate(["OrderConfirmed", "OrderPreparing", "OrderPrepared"]):
        await put_event(system, message(kind, "orders" if i == 0 else "kitchen", ORDER,
                                        version=2 if i == 0 else 1))
    await put_event(system, message("OrderPreparing", "kitchen", OTHER))
    everything = await journal_holds(system, 4)

    assert [e["type"] for e in everything] == ["OrderPreparing", "OrderPrepared",
                                               "OrderPreparing", "OrderConfirmed"]
    assert [e["seq"] for e in everything] == sorted((e["seq"] for e in everything),
                                                    reverse=True)
    mine = await events(system, orderId=ORDER)
    assert [e["type"] for e in mine] == ["OrderPrepared", "OrderPreparing", "OrderConfirmed"]
    preparing = await events(system, type="OrderPreparing")
    assert {e["correlationId"] for e in preparing} == {ORDER, OTHER}
    assert await events(system, orderId=ORDER, type="OrderPreparing") == [mine[1]]
    first = await events(system, limit=2)
    rest = await events(system, limit=2, before=first[-1]["seq"])
    assert first + rest == everything
    assert await events(system, orderId="no-such-order") == []


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": journal.MAX_LIMIT + 1}, {"limit": "many"}, {"before": 0},
    {"orderId": "x" * 65}, {"type": "T" * 65}, {"orderId": ""},
])
async def test_bad_queries_are_refused_with_4xx(system: System,
                                                params: dict[str, Any]) -> None:
    response = await system.http.get("/api/events", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


async def test_garbage_and_forgeries_are_not_recorded_and_the_journal_goes_on(
        system: System) -> None:
    # On subjects no queue of tracking takes (else its queue dead-letters them, shown).
    await put(system, "pizza.events.kitchen.Nonsense.v1", b"not json", "garbage-1")
    await put(system, "pizza.events.kitchen.Nonsense.v1",
              b'{"metadata": {"id": "' + b"x" * 500 + b'"}, "data": {}}', "garbage-2")
    huge = message("Nonsense", "kitchen", ORDER, version=2**40)  # no column holds it
    await put(system, "pizza.events.kitchen.Nonsense.v1", huge.encode(), "garbage-3")
    forged = message("OrderShipped", "orders", ORDER)  # claims orders, sent on kitchen's
    await put(system, "pizza.events.kitchen.OrderShipped.v1", forged.encode(), "forged-1")
    # An unreadable dead letter is still shown (as unreadable), its strings cut to bounds.
    await put(system, "pizza.deadletters.kitchen.order-preparing", b"\xff\xfe", "dead-1",
              {DEAD_REASON: "malformed" + "!" * 1000, DEAD_CONSUMER: "k" * 1000})
    fine = message("OrderPreparing", "kitchen", ORDER)
    await put_event(system, fine)

    found = await journal_holds(system, 2)  # two streams: in either order
    assert sorted((e["kind"], e["type"]) for e in found) == [
        ("dead-letter", "(unreadable)"), ("event", "OrderPreparing")]
    unreadable = next(e for e in found if e["kind"] == "dead-letter")
    assert len(unreadable["deadLetter"]["reason"]) == 32
    assert len(unreadable["deadLetter"]["consumer"]) == 128
    assert unreadable["id"] is None and unreadable["correlationId"] is None


async def test_old_entries_and_those_beyond_the_newest_are_pruned(system: System) -> None:
    envelopes = [message("OrderPreparing", "kitchen",
                         f"00000000-0000-4000-8000-0000000b{i:04d}") for i in range(6)]
    for env in envelopes:
        await put_event(system, env)
    found = await journal_holds(system, 6)
    db = system.service("tracking").journals.current().db
    now = datetime.now(UTC)
    oldest = found[-1]["seq"]
    async with db.begin() as conn:  # the first one arrived two days ago
        await conn.execute(update(journal_table).where(journal_table.c.seq == oldest)
                           .values(received_at=now - timedelta(hours=48)))

    assert await journal.prune(db, now, keep_hours=24, keep_rows=100, batch=2) == 1
    assert [e["seq"] for e in await events(system)] == [e["seq"] for e in found[:5]]
    assert await journal.prune(db, now, keep_hours=24, keep_rows=3, batch=2) == 2
    assert [e["seq"] for e in await events(system)] == [e["seq"] for e in found[:3]]
    assert await journal.prune(db, now, keep_hours=24, keep_rows=3) == 0


def sent(body: str) -> list[tuple[int, dict[str, Any]]]:
    """The (id, entry) of each ``entry`` event of a Server-Sent Events body."""
    found = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") == "entry":
            found.append((int(fields["id"]), orjson.loads(fields["data"])))
    return found


async def test_the_stream_sends_what_came_after_the_last_entry_seen(system: System) -> None:
    for kind in ("OrderConfirmed", "OrderPreparing", "OrderPrepared"):
        await put_event(system, message(kind, "orders" if kind == "OrderConfirmed" else
                                        "kitchen", ORDER, version=2 if kind ==
                                        "OrderConfirmed" else 1))
    await put_event(system, message("OrderPreparing", "kitchen", OTHER))
    newest_first = await journal_holds(system, 4)
    oldest = newest_first[-1]["seq"]

    # seconds=0: what is there now, then the connection ends (a browser reconnects).
    response = await system.http.get("/api/events/stream",
                                     params={"after": oldest, "seconds": 0})
    assert response.status_code == 200
    assert sent(response.text) == [(e["seq"], e) for e in reversed(newest_first[:3])]
    # A reconnecting EventSource says what it saw last; that wins over ?after=.
    resumed = await system.http.get("/api/events/stream",
                                    params={"after": oldest, "seconds": 0},
                                    headers={"Last-Event-ID": str(newest_first[1]["seq"])})
    assert [seq for seq, _ in sent(resumed.text)] == [newest_first[0]["seq"]]
    mine = await system.http.get("/api/events/stream", params={
        "after": 0, "seconds": 0, "orderId": ORDER, "type": "OrderPreparing"})
    assert [e["correlationId"] + e["type"] for _, e in sent(mine.text)] == \
        [ORDER + "OrderPreparing"]
    # From now: nothing old.
    fresh = await system.http.get("/api/events/stream", params={"seconds": 0})
    assert sent(fresh.text) == []


async def test_an_entry_number_past_what_the_database_holds_is_refused_not_a_crash(
        system: System) -> None:
    huge = str(2**80)  # schemathesis found this a 500 (SQLite's integers are 64-bit)
    for path, params in (("/api/events", {"before": huge}),
                         ("/api/events/stream", {"after": huge, "seconds": "0"})):
        answer = await system.http.get(path, params=params)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["error"]["details"]


async def test_a_last_event_id_that_is_not_ours_is_ignored(system: System) -> None:
    # The browser sends back the id we gave; anything else starts the stream afresh.
    for sent in ("null", ";X<@Y", str(2**80)):
        answer = await system.http.get("/api/events/stream", params={"seconds": "0"},
                                       headers={"Last-Event-ID": sent})
        assert answer.status_code == 200, (sent, answer.text)
