"""What a process tree spends, read from Linux's /proc; what SQLite files committed.

* :func:`tree_cpu` is the CPU time (user + sys, every thread) of a process and all its
  descendants, per process, each labelled with what it is: ``pizza serve kitchen`` is
  ``kitchen`` (``pizza serve kitchen pickup`` is ``kitchen+pickup``), the nats-server
  is ``broker``, the root is ``supervisor`` (or whatever the caller names it). Two
  readings, ``later - earlier``, give what each spent between them (:func:`spent`); a
  process that appeared in between counts from zero.
* :func:`sqlite_commits` counts the write transactions committed to the SQLite files of
  a directory since they were opened, without opening them: every WAL-mode database has
  a shared-memory index beside it (``NAME.db-shm``) whose header holds a counter that
  SQLite increments at each commit that wrote something (``iChange``, see "WAL-index
  Format" in SQLite's file format document). A transaction that wrote nothing is not
  counted; a checkpoint does not reset it.

No psutil: the few fields needed are in ``/proc/PID/stat`` and ``/proc/PID/cmdline``.
Elsewhere than Linux the readers raise :class:`Unsupported` and the scenario is skipped.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# The WAL-index header: iVersion u32, unused u32, iChange u32, ... in native byte order.
_ICHANGE = struct.Struct("=I")
_ICHANGE_OFFSET = 8


class Unsupported(Exception):
    """No /proc here (not Linux): CPU time per process cannot be read."""


@dataclass(frozen=True)
class Reading:
    pid: int
    label: str
    cpu_seconds: float  # user + sys of every thread since the process started


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+sys seconds) of ``pid``, None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after it.
    fields = text[text.rindex(")") + 2:].split()
    ppid = int(fields[1])
    utime, stime = int(fields[11]), int(fields[12])
    return ppid, (utime + stime) / _TICKS


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def label(argv: list[str], root: bool, root_label: str) -> str:
    """What a process of the system is, from its command line."""
    if root:
        return root_label
    if argv and Path(argv[0]).name.startswith("nats-server"):
        return "broker"
    if "serve" in argv:
        after = argv[argv.index("serve") + 1:]
        served = []
        for arg in after:  # the services, up to the first option
            if arg.startswith("-"):
                break
            served.append(arg)
        if served:
            return "+".join(served)
    return "other"


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, parents first."""
    if not PROC.is_dir():
        raise Unsupported("no /proc: CPU time per process is read from Linux's /proc")
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return found


def tree_cpu(root: int, root_label: str = "supervisor") -> dict[int, Reading]:
    """The CPU time of ``root`` and its descendants so far, per process."""
    readings: dict[int, Reading] = {}
    for pid in descendants(root):
        stat = _stat(pid)
        if stat is None:
            continue
        readings[pid] = Reading(pid, label(_cmdline(pid), pid == root, root_label), stat[1])
    return readings


def spent(earlier: dict[int, Reading], later: dict[int, Reading]) -> dict[str, float]:
    """CPU seconds spent between two readings, summed per label. A process gone by the
    later reading is not counted (the supervisor restarts a child that died: say so)."""
    by_label: dict[str, float] = {}
    for pid, now in later.items():
        before = earlier.get(pid)
        delta = now.cpu_seconds - (before.cpu_seconds if before is not None else 0.0)
        by_label[now.label] = by_label.get(now.label, 0.0) + max(0.0, delta)
    return by_label


def self_cpu() -> float:
    """This process's CPU time (user + sys, every thread), to the nanosecond (os.times
    counts in clock ticks: 10 ms, more than a tiny floor run takes)."""
    return time.process_time()


def sqlite_commits(directory: Path) -> dict[str, int]:
    """Write transactions committed so far to each ``*.db`` in ``directory`` (by stem),
    from its WAL index; a database without one (not open, not WAL) is left out."""
    counts: dict[str, int] = {}
    for shm in sorted(directory.glob("*.db-shm")):
        try:
            with shm.open("rb") as index:
                header = index.read(_ICHANGE_OFFSET + _ICHANGE.size)
        except OSError:
            continue
        if len(header) == _ICHANGE_OFFSET + _ICHANGE.size:
            counts[shm.name.removesuffix(".db-shm")] = _ICHANGE.unpack_from(
                header, _ICHANGE_OFFSET)[0]
    return counts
