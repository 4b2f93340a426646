"""Log lines are cut before Rich renders them: a hostile value cannot stall the loop."""

from __future__ import annotations

import io
import logging
import time

from rich.console import Console
from rich.logging import RichHandler

from pizza.log_limits import MAX_CHARACTERS, bounded


def test_a_huge_value_is_logged_cut_and_fast() -> None:
    out = io.StringIO()
    handler = bounded(RichHandler(console=Console(file=out, width=200), show_path=False))
    log = logging.getLogger("pizza.test-log-limits")
    log.addHandler(handler)
    log.propagate = False
    try:
        started = time.monotonic()
        log.warning("order %s not completed", "x" * 100_000)
        took = time.monotonic() - started
    finally:
        log.removeHandler(handler)
    assert took < 0.5  # unbounded, Rich's highlighter took ~54 s over this line
    text = out.getvalue()
    assert "100020" in text and "characters]" in text  # how long the line was
    assert text.count("x") <= MAX_CHARACTERS


def test_a_short_line_is_left_alone() -> None:
    record = logging.LogRecord("pizza", logging.INFO, __file__, 1, "order %s", ("o-1",), None)
    handler = bounded(logging.NullHandler())
    assert handler.filter(record)
    assert record.getMessage() == "order o-1"


def test_a_url_is_logged_without_its_credentials() -> None:
    record = logging.LogRecord("pizza", logging.INFO, __file__, 1, "bus at %s; db %s",
                               ("nats://svc:s3cret@10.0.0.1:4222",
                                "postgresql://pg:hunter2@db/pizza"), None)
    handler = bounded(logging.NullHandler())
    assert handler.filter(record)
    line = record.getMessage()
    assert "s3cret" not in line and "hunter2" not in line
    assert line == "bus at nats://***@10.0.0.1:4222; db postgresql://***@db/pizza"
