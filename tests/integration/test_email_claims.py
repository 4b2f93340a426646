"""The emails notifications has to send, shared by several senders (several processes
on one PostgreSQL database): each email is claimed by one sender at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from pizza.contracts.notifications import SendEmailV1
from pizza.eventing.envelope import Metadata
from pizza.eventing.storage import Database
from pizza.services.notifications import outgoing
from pizza.services.notifications.tables import metadata


@pytest.fixture
async def db(storage: dict[str, str | None]) -> AsyncIterator[Database]:
    database = Database("notifications", storage["database_url"], schema=storage["schema"],
                        tables=metadata)
    await database.create()
    yield database
    await database.close()


async def recorded(db: Database, count: int) -> list[str]:
    ids = []
    async with db.begin() as conn:
        for n in range(count):
            meta = Metadata(type="SendEmail", version=1, source="orders",
                            reply_to="pizza.replies.orders")
            command = SendEmailV1.model_validate({
                "to": f"c{n}@example.com", "from": "orders@plant-based.pizza",
                "subject": "Your receipt", "body": "Thanks"})
            assert await outgoing.record(conn, command, meta, f"<{meta.id}@x>")
            assert not await outgoing.record(conn, command, meta, f"<{meta.id}@x>")
            ids.append(meta.id)
    return ids


async def test_two_senders_never_claim_the_same_email(db: Database) -> None:
    ids = await recorded(db, 10)

    first, second = await asyncio.gather(outgoing.claim(db, "first", 6),
                                         outgoing.claim(db, "second", 6))
    mine = {email.command.id for email in first}
    theirs = {email.command.id for email in second}

    assert mine.isdisjoint(theirs)
    assert mine | theirs == set(ids)
    assert await outgoing.claim(db, "third", 10) == []  # all are claimed

    await outgoing.release(db, "first")  # a sender that stops gives its claims back
    again = await outgoing.claim(db, "third", 10)
    assert {email.command.id for email in again} == mine


async def test_a_finished_email_is_not_claimed_again(db: Database) -> None:
    [command_id] = await recorded(db, 1)
    [email] = await outgoing.claim(db, "first", 10)
    assert email.command.id == command_id and email.command.reply_to == "pizza.replies.orders"

    async with db.begin() as conn:
        assert await outgoing.finish(conn, email)
    async with db.begin() as conn:
        assert not await outgoing.finish(conn, email)  # done once only: answered once
    await outgoing.release(db)
    assert await outgoing.claim(db, "second", 10) == []
    assert await outgoing.pending(db) == 0


async def test_done_emails_are_forgotten_after_a_week_and_pending_ones_never(
        db: Database) -> None:
    done_id, pending_id = await recorded(db, 2)
    claimed = {email.command.id: email for email in await outgoing.claim(db, "first", 10)}
    async with db.begin() as conn:
        assert await outgoing.finish(conn, claimed[done_id])

    assert await outgoing.prune(db) == 0  # done just now: kept
    assert await outgoing.prune(db, kept=timedelta(seconds=-1)) == 1
    await outgoing.release(db)
    [left] = await outgoing.claim(db, "second", 10)
    assert left.command.id == pending_id
