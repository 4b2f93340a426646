"""Where the read model lives: the service's own table (default) or Redis.

Both stores offer the same few verbs (``Store``) and are chosen once, at start
(``open_store``): ``PIZZA_REDIS_URL`` set means Redis.

``stage`` is a read-modify-write of one document through ``projection.apply``:

* SqlStore writes in the handler's transaction, together with the kernel's inbox row, so
  the change and "this message was handled" commit together. It gathers the changes of
  a whole batch (the kernel handles a batch in one transaction) and, just before the
  commit (``Context.before_commit``), reads every order they touch at once, locked,
  folds each order's events in, and writes the changed documents with one statement:
  the fold is a function of the set of events, so folding a batch at once gives the
  documents one at a time would.
* RedisStore cannot join that transaction: it writes at once (atomically per document,
  with WATCH/MULTI), and the inbox row commits afterwards. If the process dies between
  the two, or the batch is rolled back, the message is redelivered and applied again.
  That is harmless because the projection is idempotent: the timeline keeps each event
  type once and the status is a function of the set of types seen, so applying an event
  twice gives the document it gave once.

Each store rings the in-process ``Hub`` for a changed order: SqlStore directly (a stream
then re-reads until the commit shows), RedisStore through a Redis channel, so a stream in
any process hears a change made by any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError
from sqlalchemy import bindparam, delete, select

from pizza.eventing.context import Context
from pizza.eventing.storage import AsyncConnection, Database, upsert
from pizza.services.tracking.hub import Hub
from pizza.services.tracking.projection import OrderView, parse_time
from pizza.services.tracking.tables import order_views

log = logging.getLogger("pizza.tracking.store")

Change = Callable[[OrderView | None], OrderView]
Changed = Callable[[str, OrderView], None]

# Keys are "<prefix>:order:<id>" and "<prefix>:customer:<id>"; changes go to
# "<prefix>:changes". Tests change the prefix to keep their keys apart.
REDIS_KEY_PREFIX = "pizza:tracking"


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    poll_seconds: float  # how often a follower re-reads without a ring

    async def stage(self, ctx: Context, order_id: str, change: Change,
                    changed: Changed) -> None:
        """Apply ``change`` to one document within the handler's transaction, and call
        ``changed(order_id, document)`` after the commit if it changed. A store may
        gather a batch's changes and write them at once before the commit."""
        ...

    async def get(self, order_id: str) -> OrderView | None:
        """The stored document, visible or not."""
        ...

    async def for_customer(self, customer_id: str, limit: int) -> list[OrderView]:
        """A customer's visible orders, newest confirmation first."""
        ...

    async def clear(self) -> None:
        """Forget the whole read model (the first half of a rebuild from history)."""
        ...


def open_store(db: Database, hub: Hub, redis_url: str | None = None) -> Store:
    """The store of the read model: in Redis at ``redis_url`` if given, else in ``db``."""
    if redis_url:
        return RedisStore(redis_url, hub, prefix=REDIS_KEY_PREFIX)
    return SqlStore(db, hub)


def _encode(view: OrderView) -> str:
    return orjson.dumps(view.to_json()).decode()


def _decode(raw: str | bytes | None) -> OrderView | None:
    return None if raw is None else OrderView.from_json(orjson.loads(raw))


def _fold(view: OrderView | None, changes: list[Change]) -> OrderView:
    for change in changes:
        view = change(view)
    assert view is not None
    return view


def _confirmed_at(view: OrderView) -> datetime | None:
    moment = view.confirmed_at
    return parse_time(moment).astimezone(UTC) if moment else None


class SqlStore:
    """Documents in the ``order_views`` table of the service's database."""

    def __init__(self, db: Database, hub: Hub) -> None:
        # On SQLite every writer is in this process and rings; PostgreSQL may be shared.
        self.poll_seconds = 10.0 if db.is_sqlite else 1.0
        self.db = db
        self.hub = hub

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def stage(self, ctx: Context, order_id: str, change: Change,
                    changed: Changed) -> None:
        """Gather the change; the batch's changes are written together just before its
        commit (``_write``): one locked read and at most one insert and one update
        statement per batch, instead of two or three round trips per event."""
        pending: dict[str, list[Change]] | None = ctx.transaction.state.get(self)
        if pending is None:
            pending = ctx.transaction.state[self] = {}
            gathered = pending

            async def write() -> None:
                for order_id, view in await self._write(ctx.db, gathered):
                    ctx.on_commit(functools.partial(changed, order_id, view))

            ctx.before_commit(self, write)
        pending.setdefault(order_id, []).append(change)

    async def _write(self, conn: AsyncConnection,
                     pending: dict[str, list[Change]]) -> list[tuple[str, OrderView]]:
        """Fold every gathered change into its document; the documents that changed.

        The rows are read locked in order-id order, so two transactions folding the same
        orders (tracking's queues run at once, and on PostgreSQL several processes may)
        wait for each other instead of deadlocking."""
        ids = sorted(pending)
        before = await self._locked_many(conn, ids)
        after: dict[str, OrderView] = {}
        for order_id in ids:
            after[order_id] = _fold(before.get(order_id), pending[order_id])
        new = [order_id for order_id in ids if order_id not in before]
        written: list[tuple[str, OrderView]] = []
        if new:
            inserted = await self._insert_many(conn, [after[order_id] for order_id in new])
            written += [(order_id, after[order_id]) for order_id in new
                        if order_id in inserted]
            raced = [order_id for order_id in new if order_id not in inserted]
            if raced:  # another process inserted them meanwhile (PostgreSQL): now locked
                theirs = await self._locked_many(conn, raced)
                for order_id in raced:
                    before[order_id] = theirs[order_id]
                    after[order_id] = _fold(theirs[order_id], pending[order_id])
        updates = [(order_id, after[order_id]) for order_id in ids
                   if order_id in before and after[order_id] != before[order_id]]
        if updates:
            rows = [{"key": order_id, **{f"new_{name}": value
                                         for name, value in self._row(view).items()}}
                    for order_id, view in updates]
            await conn.execute(
                order_views.update().where(order_views.c.order_id == bindparam("key"))
                .values({name.removeprefix("new_"): bindparam(name)
                         for name in rows[0] if name != "key"}),
                rows)
        return written + updates

    async def _locked_many(self, conn: AsyncConnection,
                           ids: list[str]) -> dict[str, OrderView]:
        query = (select(order_views.c.order_id, order_views.c.document)
                 .where(order_views.c.order_id.in_(ids))
                 .order_by(order_views.c.order_id).with_for_update())
        found: dict[str, OrderView] = {}
        for order_id, raw in (await conn.execute(query)).all():
            view = _decode(raw)
            if view is not None:
                found[order_id] = view
        return found

    async def _insert_many(self, conn: AsyncConnection, views: list[OrderView]) -> set[str]:
        """Insert the absent ones; the ids inserted (not those another got in first)."""
        statement = (upsert(conn, order_views)
                     .on_conflict_do_nothing(index_elements=["order_id"])
                     .returning(order_views.c.order_id))
        rows = [{"order_id": view.order_id, **self._row(view)} for view in views]
        return set((await conn.execute(statement, rows)).scalars())  # compiled once

    @staticmethod
    def _row(view: OrderView) -> dict[str, Any]:
        visible = view.is_visible
        return {
            "document": _encode(view),
            "status": view.status,
            "customer_id": view.customer_id if visible else None,
            "confirmed_at": _confirmed_at(view) if visible else None,
            "updated_at": datetime.now(UTC),
        }

    async def get(self, order_id: str) -> OrderView | None:
        async with self.db.read() as conn:
            query = select(order_views.c.document).where(order_views.c.order_id == order_id)
            return _decode((await conn.execute(query)).scalar_one_or_none())

    async def for_customer(self, customer_id: str, limit: int) -> list[OrderView]:
        query = (select(order_views.c.document)
                 .where(order_views.c.customer_id == customer_id)
                 .order_by(order_views.c.confirmed_at.desc(), order_views.c.order_id.desc())
                 .limit(limit))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).scalars()
            return [view for raw in rows if (view := _decode(raw)) is not None]

    async def clear(self) -> None:
        async with self.db.begin() as conn:
            await conn.execute(delete(order_views))


class RedisStore:
    """Documents as JSON strings in Redis; each change is also published on a channel."""

    poll_seconds = 10.0  # every writer rings through the Redis channel

    def __init__(self, url: str, hub: Hub, *, prefix: str = REDIS_KEY_PREFIX) -> None:
        self.redis: Redis = Redis.from_url(url, decode_responses=True)
        self.hub = hub
        self.prefix = prefix
        self.channel = f"{prefix}:changes"
        self._listener: asyncio.Task[None] | None = None

    def key(self, order_id: str) -> str:
        return f"{self.prefix}:order:{order_id}"

    def customer_key(self, customer_id: str) -> str:
        return f"{self.prefix}:customer:{customer_id}"

    async def start(self) -> None:
        """Subscribe before returning, so no change published after start is missed."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self._listener = asyncio.create_task(self._listen(pubsub), name="tracking-redis")

    async def _listen(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.hub.notify(orjson.loads(message["data"])["orderId"])
        except asyncio.CancelledError:
            raise
        except Exception as error:  # streams still poll; they only lose their doorbell
            log.warning("tracking stopped listening to %s: %s", self.channel, error)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self.redis.aclose()

    async def update(self, conn: AsyncConnection, order_id: str,
                     change: Change) -> OrderView | None:
        key = self.key(order_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    before = _decode(await pipe.get(key))
                    after = change(before)
                    if after == before:
                        await pipe.unwatch()
                        return None
                    document = _encode(after)
                    pipe.multi()
                    pipe.set(key, document)
                    confirmed = _confirmed_at(after)
                    if after.customer_id and confirmed is not None:
                        pipe.zadd(self.customer_key(after.customer_id),
                                  {order_id: confirmed.timestamp()})
                    pipe.publish(self.channel, document)
                    await pipe.execute()
                    return after
                except WatchError:  # another writer changed it between read and write
                    continue

    async def stage(self, ctx: Context, order_id: str, change: Change,
                    changed: Changed) -> None:
        """Redis cannot join the transaction: the change is written at once (see the
        module's docstring), and ``changed`` is called after the commit."""
        after = await self.update(ctx.db, order_id, change)
        if after is not None:
            ctx.on_commit(functools.partial(changed, order_id, after))

    async def get(self, order_id: str) -> OrderView | None:
        return _decode(await self.redis.get(self.key(order_id)))

    async def for_customer(self, customer_id: str, limit: int) -> list[OrderView]:
        ids = await self.redis.zrevrange(self.customer_key(customer_id), 0, limit - 1)
        if not ids:
            return []
        raws = await self.redis.mget([self.key(str(order_id)) for order_id in ids])
        return [view for raw in raws if (view := _decode(raw)) is not None]

    async def clear(self) -> None:
        batch: list[str] = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await self.redis.delete(*batch)
                batch.clear()
        if batch:
            await self.redis.delete(*batch)
