"""One process per SQLite file: a second one is refused at start, with what to do."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pizza.eventing.storage import Database

HOLD_AND_REPORT = """
import asyncio, sys
from pizza.eventing.storage import Database

async def main():
    db = Database("kitchen", sys.argv[1])
    try:
        await db.create()
    except RuntimeError as refused:
        print("refused:", refused)
    else:
        print("created")
    await db.close()

asyncio.run(main())
"""


async def run_other_process(url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_AND_REPORT, url, stdout=asyncio.subprocess.PIPE)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return output.decode()


async def test_a_second_process_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kitchen.db'}"
    first = Database("kitchen", url)
    await first.create()
    try:
        second = await run_other_process(url)
        assert "refused:" in second and "PIZZA_DATABASE_URL" in second
    finally:
        await first.close()
    after = await run_other_process(url)
    assert after.strip() == "created", "the lock goes with the first process"


async def test_an_in_memory_database_needs_no_lock() -> None:
    """Nothing to share, so nothing to refuse: open in-memory databases never block one
    another, in this process or another."""
    url = "sqlite:///:memory:"
    first, second = Database("scratch", url), Database("scratch", url)
    await first.create()
    try:
        await second.create()  # the same service's name, the same URL, at the same time
        await second.close()
        assert (await run_other_process(url)).strip() == "created"
    finally:
        await first.close()
