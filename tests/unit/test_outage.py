"""Telling a database outage from a handler's bug, from the exception alone."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy import exc as sa

from pizza.eventing.outage import Outage, database_unavailable


class DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: a DB-API error with the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(orig: Exception, *, invalidated: bool = False) -> sa.DBAPIError:
    error = sa.OperationalError("SELECT 1", {}, orig)
    error.connection_invalidated = invalidated
    return error


def raised_while_handling(first: Exception, then: Exception) -> Exception:
    try:
        try:
            raise first
        except Exception:
            raise then  # noqa: B904 (the point: __context__ only, no "from")
    except Exception as error:
        return error


@pytest.mark.parametrize(("error", "verdict"), [
    (KeyError("total"), None),
    (ValueError("bad"), None),
    (sa.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
     None),
    (wrapped(sqlite3.OperationalError("database is locked")), "database"),
    (wrapped(sqlite3.OperationalError("no such table: orders")), None),
    (wrapped(DriverError("57P01")), "database"),  # pg_terminate_backend
    (wrapped(DriverError("08006")), "database"),  # connection failure
    (wrapped(DriverError("53300")), "database"),  # too many connections
    (wrapped(DriverError("23505")), None),  # unique violation
    (wrapped(DriverError("40001")), None),  # serialization failure: retried as usual
    (wrapped(Exception("whatever"), invalidated=True), "database"),
    (sa.TimeoutError("QueuePool limit reached"), "database"),
    (ConnectionRefusedError(111, "Connect call failed"), "maybe"),
    (raised_while_handling(ConnectionResetError(), KeyError("x")), None),
])
def test_verdicts(error: Exception, verdict: str | None) -> None:
    assert database_unavailable(error) == verdict


def test_an_outage_is_two_lines_however_many_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    outage = Outage("the db", logging.getLogger("test.outage"))
    for queue in ("a", "b", "c"):
        outage.begin(queue, OSError("refused"))
    outage.end("a")
    outage.end("b")
    assert outage.down, "c has not seen it back yet"
    outage.end("c")
    assert not outage.down
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
