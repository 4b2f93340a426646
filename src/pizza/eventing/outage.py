"""Telling an outage of the database from a bug, and saying so once per outage.

A handler that raises ``KeyError`` or violates a constraint has a bug, and its message is
retried and then dead-lettered. A handler whose transaction failed because the database
is unreachable has no bug: the message is fine, the queue should pause until the
database is back, and no attempt should be spent. ``database_unavailable`` tells them
apart from the exception alone; the consumer then confirms with a probe of its own.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import Literal

from sqlalchemy import exc as sa

# SQLite errors that say the file cannot be used now, not that the statement is wrong.
_SQLITE_OUTAGE = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "unable to open database file",
    "database or disk is full",
)

# PostgreSQL SQLSTATE classes and codes of an unreachable or unwilling server:
# 08 connection exception, 53 insufficient resources (too many connections, disk full),
# 58 system error (I/O), 57P01-57P03 admin/crash shutdown and "starting up".
_PG_OUTAGE_CLASSES = ("08", "53", "58")
_PG_OUTAGE_CODES = ("57P01", "57P02", "57P03")

Verdict = Literal["database", "maybe"] | None


def database_unavailable(error: BaseException) -> Verdict:
    """``"database"``: the database layer says it cannot be reached or used now.
    ``"maybe"``: a network error that may be the database's (or a handler's own call
    elsewhere): worth a probe. ``None``: a failure of the handler (a bug, a constraint)."""
    maybe = False
    for link in _causes(error):
        if isinstance(link, sa.DBAPIError) and link.connection_invalidated:
            return "database"
        if isinstance(link, sa.TimeoutError):  # no pooled connection came back in time
            return "database"
        if isinstance(link, sa.IntegrityError | sa.ProgrammingError | sa.DataError):
            return None  # the statement is wrong, wherever the server is
        if isinstance(link, sqlite3.OperationalError):
            message = str(link).lower()
            return "database" if any(m in message for m in _SQLITE_OUTAGE) else None
        code = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            if code[:2] in _PG_OUTAGE_CLASSES or code in _PG_OUTAGE_CODES:
                return "database"
            return None
        if _is_asyncpg_disconnect(link):
            return "database"
        if isinstance(link, OSError):  # refused, reset, timed out, name not resolved
            maybe = True
    return "maybe" if maybe else None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (``.orig``) and what it was raised from (``__cause__``):
    never ``__context__``, or a handler that caught a network error and raised a
    ValueError would count as an outage."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen and len(seen) < 8:
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            seen.add(id(orig))
            yield orig
            link = orig.__cause__ or link.__cause__
        else:
            link = link.__cause__


def _is_asyncpg_disconnect(error: BaseException) -> bool:
    module = type(error).__module__
    if not module.startswith("asyncpg"):
        return False
    name = type(error).__name__
    return name in ("ConnectionDoesNotExistError", "ConnectionFailureError") or (
        name == "InterfaceError" and "connection is closed" in str(error))


class Outage:
    """One dependency's state, logged once when it goes away and once when it is back,
    however many tasks (a service's queues) notice: it is back when every task that
    reported it away has seen it back."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.log = logger
        self.since: float | None = None
        self._reporters: set[str] = set()

    @property
    def down(self) -> bool:
        return self.since is not None

    @property
    def reporters(self) -> set[str]:
        return self._reporters

    def begin(self, who: str, error: BaseException | str) -> None:
        self._reporters.add(who)
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s is unavailable (%s noticed); pausing until it is back: %s",
                             self.what, who, _short(error))

    def end(self, who: str) -> None:
        self._reporters.discard(who)
        if self.since is not None and not self._reporters:
            self.log.info("%s is back after %.1f s; resuming", self.what,
                          time.monotonic() - self.since)
            self.since = None

    def forget(self, who: str) -> None:
        """``who`` stops watching (it is stopping) without having seen the end."""
        self._reporters.discard(who)
        if not self._reporters:
            self.since = None


def _short(error: BaseException | str, limit: int = 300) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
