"""Log lines of bounded length, whatever a message puts in them.

A log line may quote what came from outside (an id, an error that quotes its input). Rich,
which renders ``pizza``'s logs, highlights each line with regular expressions that take
time quadratic in the length of a long run of word characters: a 100 KB id in one line
held the event loop, and so every service of ``pizza up``, for ~54 s (a 1,000-character
line still costs ~50 ms). So every record is cut to ``MAX_CHARACTERS`` before any handler
formats it; the cut says how long the line was.

A URL with credentials in it (``nats://user:secret@host``, ``postgresql://u:pw@db``), as a
broker or database URL set by an operator may be, is logged with them blanked out.
"""

from __future__ import annotations

import logging
import re

MAX_CHARACTERS = 500
# scheme://userinfo@ : the userinfo (a user and password, or a token) is a secret.
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def without_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1***@", text) if "@" in text else text


class Truncate(logging.Filter):
    """Cut a record's message to ``limit`` characters, URL credentials blanked out (a
    filter on a handler)."""

    def __init__(self, limit: int = MAX_CHARACTERS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = without_credentials(message)
        if len(clean) > self.limit:
            record.msg = f"{clean[:self.limit]}... [{len(clean)} characters]"
            record.args = None
        elif clean is not message:
            record.msg, record.args = clean, None
        return True


def bounded(handler: logging.Handler, limit: int = MAX_CHARACTERS) -> logging.Handler:
    """``handler``, with its records cut to ``limit`` characters."""
    handler.addFilter(Truncate(limit))
    return handler
