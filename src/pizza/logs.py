"""How ``pizza`` writes its logs: one line per event, bounded, as text or as JSON.

* Every record's message is cut to ``log_limits.MAX_CHARACTERS`` before any handler
  formats it, and a traceback to ``MAX_TRACEBACK`` characters: a line costs time linear
  in its (bounded) size, whatever an outside input put in it.
* ``PIZZA_LOG_FORMAT=text`` (the default): on a terminal, Rich's handler with **no
  highlighter and no markup** (Rich's highlighter is quadratic on long words: see
  ``log_limits``); anywhere else (a file, a pipe, a container's log) exactly one plain
  line per event: ``time level logger: message``, a line break in the message shown as
  ``\\n`` and a traceback joined to its line with `` | ``.
* ``PIZZA_LOG_FORMAT=json``: one JSON object per line, with ``time`` (UTC, ISO 8601),
  ``level``, ``logger``, ``message``, ``service``, and while a handler runs the message's
  ``queue``, ``messageType``, ``messageId``, ``correlationId``, ``orderId`` and
  ``traceId`` (``eventing/log_context.py``); ``exception`` when there is one.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from pizza.eventing import log_context
from pizza.log_limits import MAX_CHARACTERS, bounded

FORMATS = ("text", "json")
MAX_TRACEBACK = 8000  # characters of a formatted exception, its message included
NOISY = ("aiosqlite", "asyncio", "nats", "uvicorn.access", "mail.log", "httpx")
# Extra fields a caller may pass (``log.info(..., extra={"orderId": ...})``).
EXTRA_FIELDS = ("service", "queue", "correlationId", "orderId", "traceId", "messageId",
                "messageType")


def log_format() -> str:
    """``PIZZA_LOG_FORMAT``: ``text`` (default) or ``json``."""
    chosen = (os.environ.get("PIZZA_LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"PIZZA_LOG_FORMAT={chosen[:20]!r}: choose text or json")
    return chosen


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text)} characters]"


def _one_line(text: str) -> str:
    """A message with its line breaks shown, not made (one event, one line)."""
    return text.replace("\r", "\\r").replace("\n", "\\n") if "\n" in text or "\r" in text \
        else text


def _service_of(logger: str) -> str | None:
    """``pizza.services.<name>...`` is a service's own logger."""
    if logger.startswith("pizza.services."):
        return logger.split(".", 3)[2]
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            # Already cut by the handler's filter; cut here too for a handler without it.
            "message": _cut(record.getMessage(), 2 * MAX_CHARACTERS),
        }
        service = _service_of(record.name)
        if service is not None:
            document["service"] = service
        document.update(log_context.fields())
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                document[name] = _cut(str(value), 200)
        if record.exc_info:
            document["exception"] = _cut(self.formatException(record.exc_info),
                                         MAX_TRACEBACK)
        elif record.exc_text:
            document["exception"] = _cut(record.exc_text, MAX_TRACEBACK)
        return orjson.dumps(document).decode()


class LineFormatter(logging.Formatter):
    """``time level logger: message``, the message on one line, tracebacks bounded (and,
    ``one_line``, joined to the line with `` | `` so that a file has a line per event)."""

    def __init__(self, fmt: str | None = None, *, one_line: bool = True) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.one_line = one_line

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", " | ") if self.one_line else text

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _one_line(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _cut(super().formatException(ei), MAX_TRACEBACK)


def console_handler(stream: TextIO | None = None, *, style: str | None = None,
                    terminal: bool | None = None) -> logging.Handler:
    """The handler ``pizza`` logs through (see the module's doc), records already cut.
    ``style``: ``text`` or ``json`` (default ``PIZZA_LOG_FORMAT``); ``terminal``: whether
    ``stream`` is one (default: ask it)."""
    stream = stream or sys.stderr
    chosen = style or log_format()
    handler: logging.Handler
    if chosen == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif terminal if terminal is not None else stream.isatty():
        from rich.console import Console
        from rich.highlighter import NullHighlighter
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream, soft_wrap=True, highlight=False),
                              show_path=False, markup=False, highlighter=NullHighlighter(),
                              keywords=[], log_time_format="[%X]")
        handler.setFormatter(LineFormatter("%(name)s: %(message)s", one_line=False))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(LineFormatter())
    return bounded(handler)


def configure(verbose: bool = False) -> None:
    """Log through one console handler at ``PIZZA_LOG_LEVEL`` (INFO; DEBUG if verbose)."""
    level = os.environ.get("PIZZA_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(console_handler())
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
