"""One database per service, through SQLAlchemy 2: SQLite by default, PostgreSQL by URL.

The same code runs on both (the switch is the URL, as in the eventsourcing library):

* SQLite: a file ``$PIZZA_HOME/<service>.db`` in WAL mode.
* PostgreSQL: ``PIZZA_DATABASE_URL=postgresql://...``; each service gets a schema of its
  own in that database, so services share a server but never a table.

The kernel's own tables (outbox, inbox) live beside the service's tables, in the same
database, which is what lets one transaction cover business writes, outgoing messages and
the record of a handled message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pizza.eventing import inline_sqlite, settings

if TYPE_CHECKING:
    from pizza.eventing import migrations
from pizza.eventing.outage import Outage, database_unavailable

log = logging.getLogger("pizza.eventing.storage")

kernel_metadata = MetaData()

outbox = Table(
    "eventing_outbox",
    kernel_metadata,
    # Autoincrement order is publish order: one relay drains it in this order.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("traceparent", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # AUTOINCREMENT: never reuse a seq after rows are deleted, or a relay's watermark
    # would skip new rows and the order would break.
    sqlite_autoincrement=True,
)

inbox = Table(
    "eventing_inbox",
    kernel_metadata,
    Column("consumer", String(128), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("consumer", "message_id"),
)
# Pruning finds old rows through this index, in bounded batches, instead of a full scan.
inbox_handled_at = Index("ix_eventing_inbox_handled_at", inbox.c.handled_at)

_writing: ContextVar[Database | None] = ContextVar("pizza_writing", default=None)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT`` into ``table`` that knows ``ON CONFLICT`` on SQLite and PostgreSQL alike
    (``.on_conflict_do_nothing()`` / ``.on_conflict_do_update()``)."""
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def once_per_dialect(build: Callable[[AsyncConnection], Any]) -> Callable[[AsyncConnection], Any]:
    """A statement built once for each SQL dialect (``build(conn)``), to be run with its
    values as parameters: ``conn.execute(STATEMENT(conn), {"column": value, ...})``.

    What a statement built per call with ``.values(**fields)`` costs SQLAlchemy beyond
    SQLite's own work is about twice as much as the same statement built once: each
    value is coerced into a bound parameter and the statement's cache key computed anew
    (measured through ``Database.begin`` on SQLite: an upsert ~140 against ~70 CPU-us,
    a select by key ~110 against ~60). SQLAlchemy has no such cache of its own: its
    compiled cache is found by a key computed from the statement each call.
    """
    built: dict[str, Any] = {}

    def statement(conn: AsyncConnection) -> Any:
        found = built.get(conn.dialect.name)
        if found is None:
            found = built[conn.dialect.name] = build(conn)
        return found

    return statement


def database_url(service: str, url: str | None = None) -> str:
    """The URL of a service's database: the given one, PIZZA_DATABASE_URL, or SQLite."""
    url = url or os.environ.get("PIZZA_DATABASE_URL")
    if not url:
        home = settings.home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{home / f'{service}.db'}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


class Database:
    """A service's database: an async engine, its tables, created at start."""

    def __init__(self, service: str, url: str | None = None, *, schema: str | None = None,
                 tables: MetaData | None = None) -> None:
        self.service = service
        self.url = database_url(service, url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.schema = None if self.is_sqlite else (schema or service)
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ValueError(f"{self.schema!r} is not a usable schema name")
        self.tables = [kernel_metadata] + ([tables] if tables is not None else [])
        # Versioned by Alembic: the kernel's chain, and the service's when its tables
        # module has a migrations folder beside it (pizza.eventing.migrations).
        from pizza.eventing import migrations  # alembic: loaded by what runs a database

        self.chains = [migrations.kernel_chain(kernel_metadata)]
        own = migrations.service_chain(service, tables)
        if own is not None:
            self.chains.append(own)
        self.unversioned = [tables] if tables is not None and own is None else []
        self.migrated = migrations.Report()  # what create() did to the schema
        self.engine: AsyncEngine = self._create_engine()
        self._writer = self.engine.execution_options(**{WRITES: True})
        self._writers = asyncio.Lock() if self.is_sqlite else None
        self._owner: IO[str] | None = None
        # Shared by every consumer of the service: one log line per outage, not per queue.
        self.outage = Outage(f"the {service} database", log)

    def _create_engine(self) -> AsyncEngine:
        # A database error's text never quotes the statement's values: they may be
        # personal data (an email, an address), and errors are logged and kept with dead
        # letters on the broker.
        options: dict[str, Any] = {"hide_parameters": True}
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            options["async_creator"] = inline_sqlite.connector(path or ":memory:")
        else:
            # timeout: a server that went silent (not refused) is an outage in seconds.
            options["connect_args"] = {"server_settings": {"search_path": self.schema},
                                       "timeout": 10}
            options["pool_size"] = 10
            # Every checkout is pinged (three round trips: BEGIN, SELECT 1, ROLLBACK):
            # a connection the server dropped (a restart, a failover, an operator's
            # pg_terminate_backend) is replaced before any route or handler uses it.
            # Pinging only after an idle second saved those trips under load, but a route
            # then answered 5xx once per pool after connections were killed in use.
            options["pool_pre_ping"] = True
        engine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine

    async def create(self, *, log_changes: bool = True) -> None:
        """Bring the schema up to date (idempotent, safe at start): the schema, every
        migration not applied yet, and the adoption of a database made before migrations
        (see pizza.eventing.migrations). ``self.migrated`` tells what was done, and a line
        in the log too unless ``log_changes`` is false."""
        self._claim_file()
        if self.is_sqlite:  # another program may hold the file's lock for a while
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SQLITE_START_PATIENCE
            while True:
                try:
                    async with self.begin() as conn:
                        await self._create_tables(conn, log_changes)
                    return
                except OperationalError as error:
                    if not _locked(error) or loop.time() >= deadline:
                        raise
                await asyncio.sleep(0.1)
        # PostgreSQL: a server that is away, starting or out of connections at our start
        # is waited for (one line when it starts, one when it ends), not a crash.
        waited_since: float | None = None
        pause = 0.25
        while True:
            try:
                async with self.engine.begin() as conn:
                    await self._create_tables(conn, log_changes)
                break
            except Exception as error:
                if database_unavailable(error) is None:
                    raise
                if waited_since is None:
                    waited_since = time.monotonic()
                    log.warning("%s: the database is unavailable at start (%s); waiting",
                                self.service, " ".join(str(error).split())[:200])
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        if waited_since is not None:
            log.info("%s: the database answers after %.1f s", self.service,
                     time.monotonic() - waited_since)

    async def _create_tables(self, conn: AsyncConnection, log_changes: bool) -> None:
        """Upgrade the schema to the head of its migrations, in one transaction."""
        if self.schema is not None:
            # Two processes of one service start together: one upgrades, the other waits
            # for its commit here, then finds nothing left to do.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": zlib.crc32(f"pizza-schema-{self.schema}".encode())})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        # Alembic's `op` and `context` are module globals: one upgrade at a time per process
        # (on PostgreSQL the greenlet of run_sync lets the event loop run another start).
        async with _upgrading():
            self.migrated = await conn.run_sync(self._upgrade)
        if not log_changes:  # the caller says it itself (pizza migrate)
            return
        if self.migrated.newer:
            log.warning("%s: %s", self.service, self.migrated.summary())
        elif self.migrated.changes:
            log.info("%s: %s", self.service, self.migrated.summary())

    def _upgrade(self, conn: Connection) -> migrations.Report:
        from pizza.eventing import migrations

        report = migrations.upgrade(conn, self.chains)
        for metadata in self.unversioned:  # a toolkit user's tables with no migrations
            metadata.create_all(conn)
            report.created_without_migrations += list(metadata.tables)
        return report

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """``async with db.begin() as conn``: one transaction that may write.

        SQLite has one writer at a time. Writers of this process queue here, in order,
        instead of in SQLite's busy handler, which sleeps up to 100 ms between tries and
        turned 2 ms commits into 40 ms ones under load.
        """
        if self._writers is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        if _writing.get() is self:
            raise RuntimeError(f"a write transaction on {self.service}'s database is "
                               "already open in this task: nesting it would deadlock")
        async with self._writers:
            token = _writing.set(self)
            try:
                async with self._writer.connect() as conn:
                    await _begin_when_free(conn)
                    try:
                        yield conn
                    except BaseException:
                        await conn.rollback()
                        raise
                    await conn.commit()
            finally:
                _writing.reset(token)

    async def probe(self, timeout: float = 5.0) -> None:
        """Raise unless the database takes a write transaction now (a consumer paused by
        an outage asks this until it is back)."""
        async with asyncio.timeout(timeout), self.begin() as conn:
            await conn.execute(text("SELECT 1"))

    def read(self) -> Any:
        """``async with db.read() as conn``: a connection for queries, taking no write lock."""
        return self.engine.connect()

    async def close(self) -> None:
        await self.engine.dispose()
        if self._owner is not None:
            self._owner.close()  # releases the lock
            self._owner = None

    def _claim_file(self) -> None:
        """One process per SQLite file: its statements run on the event loop, so waiting
        for another process's write lock would stall the whole process. A second process
        fails at start, saying what to do instead."""
        path = make_url(self.url).database if self.is_sqlite else None
        if not path or path == ":memory:" or self._owner is not None:
            return
        owner = open(f"{path}.lock", "a+")
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner.close()
            raise RuntimeError(
                f"the {self.service} database {path} is in use by another process; run "
                "one process per PIZZA_HOME, or share a PostgreSQL database "
                "(PIZZA_DATABASE_URL) to run several") from None
        self._owner = owner


WRITES = "pizza_writes"
_upgrade_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
    weakref.WeakKeyDictionary()


def _upgrading() -> asyncio.Lock:
    """This event loop's lock around schema upgrades."""
    loop = asyncio.get_running_loop()
    lock = _upgrade_locks.get(loop)
    if lock is None:
        lock = _upgrade_locks[loop] = asyncio.Lock()
    return lock

# How long a writer waits for another program's lock on a SQLite file before the
# database counts as unavailable (a consumer then pauses, HTTP answers 503). It waits
# in small asleep steps, so the event loop goes on meanwhile.
SQLITE_LOCK_PATIENCE = 5.0
SQLITE_START_PATIENCE = 30.0  # creating the tables at start waits longer, asleep too


def _locked(error: OperationalError) -> bool:
    return "database is locked" in str(error.orig).lower()


async def _begin_when_free(conn: AsyncConnection) -> None:
    """Take SQLite's write lock (BEGIN IMMEDIATE) without blocking the event loop.

    Statements run on the loop's own thread (inline_sqlite), so SQLite's busy handler
    must not wait there: the connection's busy timeout is a few milliseconds, and while
    another program holds the lock we sleep and try again, for up to
    ``SQLITE_LOCK_PATIENCE`` seconds; then the "database is locked" error goes up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_LOCK_PATIENCE
    pause = 0.002
    while True:
        try:
            await conn.begin()
            return
        except OperationalError as error:
            if not _locked(error) or loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


BUSY_TIMEOUT_MS = 5


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transactions out of the sqlite3 module's hands: it only says BEGIN before a
    # write, so a handler's SELECT then UPDATE would run as two transactions and lose
    # updates. We say BEGIN ourselves (_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A few ms only: this wait blocks the event loop (see _begin_when_free).
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    """A transaction that may write (``Database.begin``, whose writers queue on an asyncio
    lock first) takes SQLite's one write lock at once (IMMEDIATE): read-modify-write
    handlers then see no lost update, and never fail upgrading a stale read to a write.
    Any other connection begins DEFERRED and blocks no one."""
    writes = conn.get_execution_options().get(WRITES, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")


__all__ = ["AsyncConnection", "Database", "database_url", "inbox", "kernel_metadata",
           "once_per_dialect", "outbox", "upsert"]
