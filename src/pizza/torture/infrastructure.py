"""What a scenario owns besides the system: its PostgreSQL cluster or database.

The broker is the project's own `EmbeddedNats` (a nats-server child on a free port with its
store in the scenario's directory, restartable on the same port and store). PostgreSQL is
either a cluster of the scenario's own (initdb + pg_ctl into its directory, on a free port,
as the `postgres` user when we are root, since initdb refuses root) or, where a scenario
never stops the database, one freshly created database on the machine's server, dropped
at the end. The machine's shared cluster is never stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

from pizza.torture.processes import free_port

SHARED_POSTGRES = os.environ.get("PIZZA_TORTURE_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def postgres_bin() -> Path | None:
    """Where initdb and pg_ctl live (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_no_postgres() -> str | None:
    """None when the suite can run its own PostgreSQL cluster, else the reason."""
    if postgres_bin() is None:
        return "PostgreSQL's initdb/pg_ctl not found (install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user for initdb"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing, so initdb cannot run"
    return None


class PostgresCluster:
    """A PostgreSQL cluster of our own in ``directory``; stop() and start() keep its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        self.created = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pizza"

    def _run(self, *args: str, timeout: float = 120) -> None:
        assert self.bin is not None
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False,
                              cwd=self.directory)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"{args[0]} {' '.join(args[1:3])} failed:\n{output}")

    async def create(self) -> None:
        reason = why_no_postgres()
        if reason:
            raise RuntimeError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # postgres must reach its directory through ours
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            os.chmod(self.directory.parent, 0o711)
        await asyncio.to_thread(self._run, "initdb", "-D", str(self.data), "-A", "trust",
                                "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.created = True
        atexit.register(self._stop_at_exit)
        await self.start()
        import asyncpg

        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            await admin.execute('CREATE DATABASE "pizza"')
        finally:
            await admin.close()

    async def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
                   "-c max_connections=400 -c fsync=off")
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-l",
                                str(self.directory / "postgres.log"), "-o", options,
                                "-w", "-t", "60", "start")

    async def stop(self, mode: str = "fast") -> None:
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                                "-t", "60", "stop")

    async def destroy(self) -> None:
        await asyncio.to_thread(self._stop_at_exit)
        atexit.unregister(self._stop_at_exit)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_at_exit(self) -> None:
        """Never leave our cluster running, whatever way the suite ends."""
        if self.created and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=30)


class SharedDatabase:
    """A database of our own, with a unique name, on the machine's PostgreSQL server."""

    def __init__(self, server: str = SHARED_POSTGRES) -> None:
        self.server = server.rstrip("/")
        self.name = f"pizza_torture_{uuid.uuid4().hex[:10]}"
        self.created = False

    @property
    def url(self) -> str:
        return f"{self.server}/{self.name}"

    async def create(self) -> None:
        import asyncpg

        admin = await asyncpg.connect(f"{self.server}/postgres", timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
            self.created = True
        finally:
            await admin.close()

    async def destroy(self) -> None:
        if not self.created:
            return
        import asyncpg

        admin = await asyncpg.connect(f"{self.server}/postgres", timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()


async def shared_postgres_answers(server: str = SHARED_POSTGRES) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(f"{server.rstrip('/')}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True
