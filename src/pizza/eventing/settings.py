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


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL setting: one, or a cluster's separated by commas
    (``nats://a:4222,nats://b:4222``), as nats-py takes them (a list)."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {url[:200]!r}")
    return servers


def nats_sync() -> str | None:
    """PIZZA_NATS_SYNC: ``always`` makes the embedded broker write every message to disk
    before acknowledging it (JetStream's ``sync_interval: always``); unset: the server's
    default (a sync every two minutes)."""
    raw = (os.environ.get("PIZZA_NATS_SYNC") or "").strip()
    if raw not in ("", "always"):
        raise ValueError(f"PIZZA_NATS_SYNC={raw[:40]!r}: only 'always' (or unset) is known")
    return raw or None


def nats_creds() -> Path | None:
    """PIZZA_NATS_CREDS: this process's credentials on the bus (an nkey seed file or a
    .creds file), or a directory of seed files named by service (``credentials.seed_path``)
    for a process of several services, each connecting as itself; unset means the
    embedded broker's own, or none."""
    raw = os.environ.get("PIZZA_NATS_CREDS")
    return Path(raw) if raw else None


def credentials_dir(state: Path | None = None) -> Path:
    """Where the embedded broker's users' seed files live (one per service, and operator),
    under PIZZA_HOME or the home given."""
    return (state or home()) / "nats" / "credentials"


def database_url() -> str | None:
    """A database every service shares (one schema each); unset means SQLite under home()."""
    return os.environ.get("PIZZA_DATABASE_URL") or None


def number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def broker_file() -> Path:
    """Where a running embedded broker leaves its URL, for tools such as `pizza events`."""
    return home() / "nats" / "url"


def broker_url() -> str | None:
    """PIZZA_NATS_URL, else the embedded broker `pizza up` runs under PIZZA_HOME, if any."""
    url = nats_url()
    if url:
        return url
    try:
        return broker_file().read_text().strip() or None
    except OSError:
        return None
