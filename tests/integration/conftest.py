"""Fixtures for tests against real servers: storage on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "PIZZA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"),
                                     timeout=3)
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}"
    await conn.close()
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str | None]]:
    """Host options for one test: SQLite under tmp_path, or a fresh PostgreSQL schema."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    if request.param == "sqlite":
        yield {"database_url": None, "schema": None}
        return
    reason = await postgres_reachable()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield {"database_url": POSTGRES_URL, "schema": schema}
    import asyncpg

    # Tests derive a schema per service from this one ("<schema>_<service>"): drop those
    # too. The random prefix is ours alone, so nothing another run made is touched.
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        ours = await conn.fetch(
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE schema_name = $1 OR starts_with(schema_name, $2)", schema, f"{schema}_")
        for row in ours:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{row["schema_name"]}" CASCADE')
    finally:
        await conn.close()
