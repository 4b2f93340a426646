"""Schemas are versioned: a database of the release before migrations is adopted with its
data, every service's tables module matches its migrations, and concurrent starts on
PostgreSQL upgrade once. On SQLite and on a PostgreSQL database made for each test."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import previous_release
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conftest import POSTGRES_URL, postgres_reachable
from pizza.app import SERVICES, load
from pizza.eventing import migrations
from pizza.eventing.storage import Database, kernel_metadata
from pizza.eventing.transport.memory import MemoryTransport

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str | None]:
    """PIZZA_DATABASE_URL for one test: None (SQLite files under tmp_path) or a
    PostgreSQL database created for this test alone and dropped after it."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    monkeypatch.delenv("PIZZA_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        yield None
        return
    async with new_postgres_database(monkeypatch) as url:
        yield url


@pytest.fixture
async def postgres_database(tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A PostgreSQL database for this test alone (several processes share it)."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    async with new_postgres_database(monkeypatch) as url:
        yield url


@contextlib.asynccontextmanager
async def new_postgres_database(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    reason = await postgres_reachable()
    if reason:
        pytest.skip(reason)
    import asyncpg

    name = f"pizza_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("PIZZA_DATABASE_URL", url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def engine_for(service: str, url: str | None) -> AsyncEngine:
    """An engine on a service's database as the release before migrations opened it."""
    db_url = Database(service, url).url  # the same file / database, without our start
    if db_url.startswith("sqlite"):
        return create_async_engine(db_url)
    return create_async_engine(db_url, connect_args={"server_settings": {"search_path":
                                                                         service}})


# -- the release before migrations, with data -------------------------------------------

SOME_TIME = dt.datetime.now(dt.UTC).replace(microsecond=0)


def sample(column: Column[Any], n: int) -> Any:
    kind = column.type
    if isinstance(kind, DateTime):
        # Recent: a started host keeps week-old inbox rows no longer (its retention).
        return SOME_TIME - dt.timedelta(minutes=n)
    if isinstance(kind, Integer | BigInteger):
        return 100 + n
    if isinstance(kind, JSON):
        return {"row": n, "items": [column.name]}
    if isinstance(kind, LargeBinary):
        return f"payload {n}".encode()
    if isinstance(kind, String) and kind.length is not None:
        return f"{column.name[:4]}-{n}"[: kind.length]
    return f"{column.name} text {n}"


def rows_for(metadata: MetaData) -> dict[str, list[dict[str, Any]]]:
    """Two rows for every table, a value in every column."""
    return {name: [{c.name: sample(c, n) for c in table.columns} for n in (1, 2)]
            for name, table in metadata.tables.items()}


async def make_previous_release(service: str, url: str | None) -> dict[str, Any]:
    """A database as the release before migrations left it: create_all, no version table,
    rows in every table (its own and the kernel's)."""
    engine = engine_for(service, url)
    written: dict[str, Any] = {}
    try:
        async with engine.begin() as conn:
            if url is not None:
                await conn.exec_driver_sql(f'CREATE SCHEMA "{service}"')
            for metadata in (previous_release.kernel, previous_release.SERVICES[service]):
                await conn.run_sync(metadata.create_all)
                for name, rows in rows_for(metadata).items():
                    await conn.execute(metadata.tables[name].insert(), rows)
                    written[name] = rows
    finally:
        await engine.dispose()
    return written


async def read_back(service: str, url: str | None,
                    written: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    engine = engine_for(service, url)
    try:
        async with engine.connect() as conn:
            current = MetaData()
            await conn.run_sync(lambda sync: current.reflect(sync, only=list(written)))
            found = {}
            for name, rows in written.items():
                table = current.tables[name]
                columns = [table.c[column] for column in rows[0]]
                result = await conn.execute(select(*columns).order_by(*columns[:1]))
                found[name] = [dict(row._mapping) for row in result]
            return found
    finally:
        await engine.dispose()


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SQLite hands back datetimes without their zone and JSON as text: compare what was
    stored, not how the driver dresses it."""
    def plain(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None) if value.tzinfo is None else \
                value.astimezone(dt.UTC).replace(tzinfo=None)
        if isinstance(value, str) and value.startswith("{"):
            import json
            return json.loads(value)
        if isinstance(value, memoryview):
            return bytes(value)
        return value
    return [{key: plain(value) for key, value in row.items()} for row in rows]


def pizza(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from pizza.cli import app; app(prog_name='pizza')", *args],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)


async def test_pizza_migrate_adopts_a_database_of_the_previous_release_and_keeps_its_data(
        database: str | None) -> None:
    written = {service: await make_previous_release(service, database) for service in SERVICES}

    result = await asyncio.to_thread(pizza, "migrate")

    assert result.returncode == 0, result.stderr
    for service in SERVICES:
        assert f"{service}: adopted tables made before migrations at kernel_0001, " \
               f"{service}_0001;" in result.stdout, result.stdout
        after = await read_back(service, database, written[service])
        for table, rows in written[service].items():
            assert comparable(after[table]) == comparable(rows), f"{service}.{table} changed"
        db = Database(service, database, tables=load([service])[0].tables)
        try:
            async with db.read() as conn:
                drift = await conn.run_sync(migrations.differences, db.chains)
                recorded = await conn.run_sync(migrations.recorded)
        finally:
            await db.close()
        assert drift == [], f"{service}: after the upgrade the schema is not today's: {drift}"
        assert set(recorded) == set(heads(db.chains)), recorded

    again = await asyncio.to_thread(pizza, "migrate", "kitchen")
    assert again.returncode == 0 and "kitchen: up to date at" in again.stdout, again.stdout


async def test_a_service_host_starting_on_a_previous_release_database_upgrades_it(
        database: str | None) -> None:
    """`pizza up` and `pizza serve` upgrade by themselves: a host's start is enough."""
    from pizza.eventing.host import ServiceHost

    written = await make_previous_release("kitchen", database)
    host = ServiceHost(load(["kitchen"])[0], MemoryTransport(), database_url=database)
    await host.start()
    try:
        assert [change.kind for change in host.db.migrated.changes][:2] == ["adopted"] * 2
        async with host.db.read() as conn:
            recorded = await conn.run_sync(migrations.recorded)
        assert set(recorded) == set(heads(host.db.chains))
    finally:
        await host.stop()
    after = await read_back("kitchen", database, written)
    assert comparable(after["tickets"]) == comparable(written["tickets"])
    assert comparable(after["eventing_inbox"]) == comparable(written["eventing_inbox"])


def heads(chains: list[migrations.Chain]) -> list[str]:
    script = ScriptDirectory.from_config(migrations.config(chains))
    return [migrations.chain_revisions(script, chain)[-1].revision for chain in chains]


# -- drift: every tables module matches its migrations ----------------------------------

async def test_every_service_s_tables_match_what_its_migrations_make(
        database: str | None) -> None:
    """A table change with no revision fails here, saying which and what to run."""
    for service in load():
        db = Database(service.name, database, tables=service.tables)
        try:
            assert [chain.label for chain in db.chains] == ["kernel", service.name], \
                f"{service.name} has no migrations folder beside its tables.py"
            await db.create()
            async with db.read() as conn:
                drift = await conn.run_sync(lambda sync, db=db: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}),
                    [kernel_metadata, db.chains[1].metadata]))  # type: ignore[arg-type]
        finally:
            await db.close()
        assert drift == [], (
            f"{service.name}: its tables.py (or the kernel's) differs from what its "
            f"migrations make: {drift}. Write the revision: "
            f"pizza migrate --new \"what changed\" {service.name}")


async def test_the_baselines_are_exactly_the_previous_release(database: str | None) -> None:
    """Each chain's first revision makes what create_all made at d08932f, so a database
    of that release is rightly stamped there."""
    for service in SERVICES:
        chains = Database(service, database, tables=load([service])[0].tables).chains
        engine = engine_for(service, database)
        schema = None if database is None else service

        def to_baselines(sync: Connection, chains: list[migrations.Chain] = chains,
                         schema: str | None = schema,
                         prior: MetaData = previous_release.SERVICES[service]) -> list[Any]:
            if schema is not None:
                sync.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cfg = migrations.config(chains, sync)
            for chain in chains:
                command.upgrade(cfg, f"{chain.label}_0001")
            return list(compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}),
                [previous_release.kernel, prior]))  # type: ignore[arg-type]

        try:
            async with engine.begin() as conn:
                drift = await conn.run_sync(to_baselines)
        finally:
            await engine.dispose()
        assert drift == [], f"{service}: the baseline is not the previous release: {drift}"


def test_the_drift_check_sees_a_column_no_migration_adds() -> None:
    """The comparison above is not blind: a column added to a tables module without a
    revision is found, and `pizza migrate --new` writes the revision that adds it."""
    service = load(["kitchen"])[0]
    assert service.tables is not None
    changed = MetaData()
    for table in service.tables.tables.values():
        table.to_metadata(changed)
    changed.tables["tickets"].append_column(Column("customer_id", String(100)))
    kernel, own = Database("kitchen", "sqlite://", tables=service.tables).chains
    grown = migrations.Chain(own.label, own.versions, changed)

    found = migrations.unmigrated([kernel, grown], only=grown)

    assert [(d[0], d[2], d[3].name) for d in found] == [("add_column", "tickets",
                                                        "customer_id")]


def test_pizza_migrate_new_writes_the_revision_a_change_needs(tmp_path: Path) -> None:
    """The authoring loop on a service of our own: change tables.py, `--new`, upgrade."""
    package = tmp_path / "toyshop"
    (package / "migrations" / "versions").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tables.py").write_text(textwrap.dedent("""
        import os
        from sqlalchemy import Column, MetaData, String, Table
        metadata = MetaData()
        toys = Table("toys", metadata, Column("id", String(10), primary_key=True),
                     *([Column("colour", String(20))] if os.environ.get("GROWN") else []))
    """))
    (package / "migrations" / "versions" / "toyshop_0001_baseline.py").write_text(
        textwrap.dedent('''
        """Baseline."""
        import sqlalchemy as sa
        from alembic import op
        revision = "toyshop_0001"
        down_revision = None
        branch_labels = ("toyshop",)
        def upgrade() -> None:
            op.create_table("toys", sa.Column("id", sa.String(10), primary_key=True))
    '''))
    script = textwrap.dedent("""
        import sys
        from toyshop.tables import metadata
        from pizza.eventing import migrations
        from pizza.eventing.storage import kernel_metadata
        chains = [migrations.kernel_chain(kernel_metadata),
                  migrations.service_chain("toyshop", metadata)]
        if sys.argv[1] == "new":
            print(migrations.new_revision(chains, "toyshop", "toys have a colour"))
        else:
            print(migrations.unmigrated(chains))
    """)

    def run(*args: str, grown: bool) -> str:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        if grown:
            env["GROWN"] = "1"
        done = subprocess.run([sys.executable, "-c", script, *args], env=env, text=True,
                              capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert run("check", grown=False) == "[]"
    assert run("new", grown=False) == "None", "nothing changed, nothing written"
    written = Path(run("new", grown=True))
    assert written.name == "toyshop_0002_toys_have_a_colour.py"
    assert 'add_column(sa.Column("colour"' in written.read_text()
    assert run("check", grown=True) == "[]", "the new revision makes the new column"


# -- concurrent starts on PostgreSQL ------------------------------------------------------

START_TOGETHER = """
import asyncio, sys, time
from pathlib import Path
from pizza.app import load
from pizza.eventing.storage import Database

async def main():
    service = load(["orders"])[0]
    db = Database("orders", sys.argv[1], tables=service.tables)
    print("ready", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.005)
    try:
        await db.create()
        print("done:", db.migrated.summary(), flush=True)
    finally:
        await db.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("previous", [False, True], ids=["new", "previous-release"])
async def test_processes_starting_together_upgrade_one_schema_once(
        postgres_database: str, tmp_path: Path, previous: bool) -> None:
    written = await make_previous_release("orders", postgres_database) if previous else {}
    go = tmp_path / "go"
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", START_TOGETHER, postgres_database, str(go),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(4)]
    for process in processes:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"ready"
    go.touch()
    results = [await asyncio.wait_for(process.communicate(), 60) for process in processes]

    for process, (_out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    lines = sorted(out.decode().strip() for out, _err in results)
    changed = [line for line in lines if "up to date" not in line]
    assert len(changed) == 1, f"one process upgrades, the others find it done: {lines}"
    engine = engine_for("orders", postgres_database)
    try:
        async with engine.connect() as conn:
            versions = (await conn.exec_driver_sql(
                'SELECT version_num FROM "orders".alembic_version')).scalars().all()
    finally:
        await engine.dispose()
    chains = Database("orders", postgres_database, tables=load(["orders"])[0].tables).chains
    assert sorted(versions) == sorted(heads(chains)), "one row per chain, at its head"
    if previous:
        after = await read_back("orders", postgres_database, written)
        assert comparable(after["orders"]) == comparable(written["orders"])


async def test_only_tables_with_no_migrations_are_made_by_create_all(tmp_path: Path) -> None:
    """A toolkit user's service with no migrations folder still gets its tables."""
    toys = MetaData()
    Table("toys", toys, Column("id", Text, primary_key=True))
    db = Database("toys", f"sqlite:///{tmp_path / 'toys.db'}", tables=toys)
    assert [chain.label for chain in db.chains] == ["kernel"]
    assert db.unversioned == [toys]

    await db.create()
    await db.close()
    assert db.migrated.created_without_migrations == ["toys"]
    assert db.migrated.after == tuple(heads(db.chains))


async def test_a_database_older_than_the_baseline_gets_what_it_lacks_before_the_stamp(
        tmp_path: Path) -> None:
    """A release before d08932f left a table or an index out (create_all never adds an
    index to a table that exists): adoption adds them, so the stamp tells the truth."""
    older = MetaData()
    for table in previous_release.notifications.tables.values():
        if table.name != "mailbox":
            copy = table.to_metadata(older)
            for index in list(copy.indexes):
                if index.name == "ix_outgoing_emails_done":
                    copy.indexes.discard(index)
    url = f"sqlite:///{tmp_path / 'notifications.db'}"
    engine = create_async_engine(url.replace("sqlite", "sqlite+aiosqlite"))
    async with engine.begin() as conn:
        await conn.run_sync(previous_release.kernel.create_all)
        await conn.run_sync(older.create_all)
    await engine.dispose()

    db = Database("notifications", url, tables=load(["notifications"])[0].tables)
    await db.create()
    try:
        adopted = {change.revision: change.description for change in db.migrated.changes
                   if change.kind == "adopted"}
        assert adopted["notifications_0001"].endswith("added mailbox, ix_outgoing_emails_done")
        assert adopted["kernel_0001"] == "tables made before migrations"
        async with db.read() as conn:
            assert await conn.run_sync(migrations.differences, db.chains) == []
    finally:
        await db.close()


async def test_services_starting_at_once_in_one_process_each_get_their_schema(
        database: str | None) -> None:
    """Alembic keeps its context in module globals; starts gathered on one event loop
    (PostgreSQL's driver lets the loop run others mid-upgrade) must not mix them up."""
    dbs = [Database(service.name, database, tables=service.tables) for service in load()]
    try:
        await asyncio.gather(*(db.create() for db in dbs))
        for db in dbs:
            assert db.migrated.after == tuple(sorted(heads(db.chains))), db.service
            async with db.read() as conn:
                assert await conn.run_sync(migrations.differences, db.chains) == [], db.service
    finally:
        await asyncio.gather(*(db.close() for db in dbs))


async def test_a_schema_a_newer_release_upgraded_is_left_as_it_is(tmp_path: Path) -> None:
    """Rolling back, or an older process restarting during a rolling deploy, finds a
    revision it does not know: it runs on the schema as it is, saying so, not crashing."""
    url = f"sqlite:///{tmp_path / 'kitchen.db'}"
    service = load(["kitchen"])[0]
    first = Database("kitchen", url, tables=service.tables)
    await first.create()
    async with first.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE alembic_version SET version_num = 'kitchen_9999' "
            "WHERE version_num LIKE 'kitchen_%'")
    await first.close()

    again = Database("kitchen", url, tables=service.tables)
    await again.create()
    try:
        assert again.migrated.newer == ["kitchen_9999"]
        assert "newer than this release" in again.migrated.summary()
        async with again.read() as conn:
            rows = await conn.run_sync(migrations.history, again.chains)
        listed = [(rev.revision, applied) for _chain, rev, applied in rows]
        assert listed[0] == ("kernel_0001", True)
        # Which of its own the kitchen has is unknown under a newer release's mark.
        assert [revision for revision, _ in listed[1:]] == ["kitchen_0001", "kitchen_0002"]
        assert not any(applied for _, applied in listed[1:])
    finally:
        await again.close()


def test_pizza_migrate_check_and_history_change_nothing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    monkeypatch.delenv("PIZZA_DATABASE_URL", raising=False)

    check = pizza("migrate", "--check")
    history = pizza("migrate", "--history", "kitchen")

    assert check.returncode == 0, check.stdout + check.stderr
    assert all(service in check.stdout for service in SERVICES), check.stdout
    assert history.returncode == 0, history.stderr
    assert "kitchen_0001" in history.stdout and "pending" in history.stdout
    assert not (tmp_path / "kitchen.db").exists(), "--history creates no database"
    refused = pizza("migrate", "no-such-service")
    assert refused.returncode != 0 and "unknown service" in refused.stderr
