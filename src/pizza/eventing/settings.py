"""Configuration the kernel reads from the environment (every PIZZA_* is in the README)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Where state lives: databases, JetStream storage, logs (PIZZA_HOME, default ./.pizza)."""
    return Path(os.environ.get("PIZZA_HOME", ".pizza")).resolve()


def nats_url() -> str | None:
    """A NATS server or cluster to use; unset means start an embedded one."""
    return os.environ.get("PIZZA_NATS_URL") or None


def number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
