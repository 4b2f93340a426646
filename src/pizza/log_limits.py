"""Log lines of bounded length, whatever a message puts in them.

A log line may quote what came from outside (an id, an error that quotes its input). Rich,
which renders ``pizza``'s logs, highlights each line with regular expressions that take
time quadratic in the length of a long run of word characters: a 100 KB id in one line
held the event loop, and so every service of ``pizza up``, for ~54 s (a 1,000-character
line still costs ~50 ms). So every record is cut to ``MAX_CHARACTERS`` before any handler
formats it; the cut says how long the line was.
"""

from __future__ import annotations

import logging

MAX_CHARACTERS = 500


class Truncate(logging.Filter):
    """Cut a record's message to ``limit`` characters (a filter on a handler)."""

    def __init__(self, limit: int = MAX_CHARACTERS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.limit:
            record.msg = f"{message[:self.limit]}... [{len(message)} characters]"
            record.args = None
        return True


def bounded(handler: logging.Handler, limit: int = MAX_CHARACTERS) -> logging.Handler:
    """``handler``, with its records cut to ``limit`` characters."""
    handler.addFilter(Truncate(limit))
    return handler
