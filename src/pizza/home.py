"""One ``PIZZA_HOME``, one system: the lock a `pizza up` (or `pizza serve`) takes first.

Everything under ``$PIZZA_HOME`` belongs to one running system: the embedded broker's
JetStream store, the file that records its URL, one SQLite file per service. A second
system on the same home would start a second nats-server on a live store and overwrite
the URL the tools read, so the command takes an OS lock (``flock``) on
``$PIZZA_HOME/pizza.lock`` before it touches anything, and holds it until it exits. The
kernel releases it when the process ends, however it ends (kill -9 included), so a crashed
system never blocks the next start.

* `pizza up`, and a `pizza serve` that starts the embedded broker, hold it exclusively.
* A `pizza serve SERVICE` on SQLite with an outside broker holds it shared (services may
  run side by side, not next to a `pizza up`) and ``pizza.SERVICE.lock`` exclusively.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from pizza.eventing import settings

LOCK_FILE = "pizza.lock"

_held: list[IO[str]] = []  # open for the process lifetime: closing one releases its lock


class HomeInUse(RuntimeError):
    """Another process runs a system on this PIZZA_HOME."""


def claim(command: str, *, shared_by: str | Sequence[str] | None = None,
          supervised: bool = False) -> None:
    """Take the home for ``command`` ("pizza up"); raise HomeInUse if another has it.

    ``shared_by`` (a service name, or the names of a process's services) takes the home
    shared and each service's own lock exclusively, so several `pizza serve` of
    different services may share a home. ``supervised``: a service process of `pizza up`,
    which holds the whole home for it; only the services' own locks are taken.
    """
    home = settings.home()
    home.mkdir(parents=True, exist_ok=True)
    held: list[IO[str]] = []
    if not supervised:
        whole = _open(home / LOCK_FILE)
        if not _lock(whole, shared=shared_by is not None):
            whole.close()
            raise HomeInUse(_refusal(command, home))
        if shared_by is None:
            _record(whole, command)
            _held.append(whole)
            return
        held.append(whole)
    if shared_by is None:
        raise ValueError("a supervised process runs services: name them (shared_by)")
    for service in [shared_by] if isinstance(shared_by, str) else shared_by:
        own = _open(home / f"pizza.{service}.lock")
        if not _lock(own, shared=False):
            holder = _holder(own)
            own.close()
            for file in held:
                file.close()
            raise HomeInUse(f"{command}: {service} on PIZZA_HOME {home} is in use by "
                            f"{holder}; stop it or use another PIZZA_HOME")
        _record(own, command)
        held.append(own)
    _held.extend(held)


def release() -> None:
    """Give the home back (the process does so anyway when it ends)."""
    while _held:
        _held.pop().close()


def _open(path: Path) -> IO[str]:
    return open(path, "a+", encoding="utf-8")  # held past this function


def _lock(file: IO[str], *, shared: bool) -> bool:
    try:
        fcntl.flock(file, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _record(file: IO[str], command: str) -> None:
    """Write who holds the lock, so a refused second start can say so."""
    file.seek(0)
    file.truncate()
    file.write(f"{command} (pid {os.getpid()})\n")
    file.flush()


def _holder(file: IO[str]) -> str:
    file.seek(0)
    text = file.read(200).strip()
    return text or "another pizza process"


def _refusal(command: str, home: Path) -> str:
    return (f"{command}: PIZZA_HOME {home} is in use by {_holders(home)}; "
            "stop it or use another PIZZA_HOME")


def _holders(home: Path) -> str:
    """Who has the home: the exclusive holder's record, or the services holding it shared."""
    with _open(home / LOCK_FILE) as probe:
        if not _lock(probe, shared=True):  # held exclusively: its record is current
            return _holder(probe)
    services = []
    for path in sorted(home.glob("pizza.*.lock")):
        with _open(path) as probe:
            if not _lock(probe, shared=True):
                services.append(_holder(probe))
    return ", ".join(services) or "another pizza process"
