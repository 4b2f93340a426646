"""Where the read model lives: the service's own table (default) or Redis.

Both stores offer the same few verbs (``Store``) and are chosen once, at start
(``open_store``): ``PIZZA_REDIS_URL`` set means Redis.

``update`` is a read-modify-write of one document through ``projection.apply``:

* SqlStore writes in the handler's transaction, together with the kernel's inbox row, so
  the change and "this message was handled" commit together.
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
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError
from sqlalchemy import delete, select

from pizza.eventing.storage import AsyncConnection, Database, upsert
from pizza.services.tracking.hub import Hub
from pizza.services.tracking.projection import OrderView, parse_time
from pizza.services.tracking.tables import order_views

log = logging.getLogger("pizza.tracking.store")

Change = Callable[[OrderView | None], OrderView]

# Keys are "<prefix>:order:<id>" and "<prefix>:customer:<id>"; changes go to
# "<prefix>:changes". Tests change the prefix to keep their keys apart.
REDIS_KEY_PREFIX = "pizza:tracking"


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    poll_seconds: float  # how often a follower re-reads without a ring

    async def update(self, conn: AsyncConnection, order_id: str,
                     change: Change) -> OrderView | None:
        """Apply ``change`` to one document; the new document, or None if unchanged."""
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

    async def update(self, conn: AsyncConnection, order_id: str,
                     change: Change) -> OrderView | None:
        before = await self._locked(conn, order_id)
        if before is None:
            after = change(None)
            if await self._insert(conn, after):
                return after
            # Another process inserted it meanwhile (PostgreSQL); that row is locked now.
            before = await self._locked(conn, order_id)
        assert before is not None
        after = change(before)
        if after == before:
            return None
        await conn.execute(order_views.update()
                           .where(order_views.c.order_id == order_id)
                           .values(**self._row(after)))
        return after

    async def _locked(self, conn: AsyncConnection, order_id: str) -> OrderView | None:
        """Read the row, locking it on PostgreSQL (SQLite's writer lock is already held:
        the kernel wrote the inbox row first in this transaction)."""
        query = (select(order_views.c.document)
                 .where(order_views.c.order_id == order_id).with_for_update())
        return _decode((await conn.execute(query)).scalar_one_or_none())

    async def _insert(self, conn: AsyncConnection, view: OrderView) -> bool:
        """Insert if absent; False if a concurrent transaction got there first."""
        statement = (upsert(conn, order_views)
                     .values(order_id=view.order_id, **self._row(view))
                     .on_conflict_do_nothing(index_elements=["order_id"])
                     .returning(order_views.c.order_id))
        return (await conn.execute(statement)).first() is not None

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
