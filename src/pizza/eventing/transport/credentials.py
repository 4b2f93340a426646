"""Who a connection is on the bus: an nkey seed file or a .creds (JWT) file.

Every service connects with credentials of its own, so the broker can refuse what the
service may not do (``permissions.py`` says what it may). The embedded broker's keys are
made once, on first start, under ``$PIZZA_HOME/nats/credentials/<name>.nk`` (readable by
the owner only); ``pizza broker-config`` writes the same for a nats-server of your own.
A process given ``PIZZA_NATS_CREDS`` uses that file instead, whichever of the two kinds
it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nkeys

OPERATOR = "operator"  # the user of the tools (`pizza deadletters`, `pizza events`, ...)
_JWT_MARK = "-----BEGIN NATS USER JWT-----"


class BadCredentials(ValueError):
    """A credentials file that is neither an nkey seed nor a .creds file."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A credentials file and how nats-py takes it."""

    path: Path
    kind: Literal["nkey", "creds"]

    def connect_options(self) -> dict[str, Any]:
        if self.kind == "creds":
            return {"user_credentials": str(self.path)}
        return {"nkeys_seed": str(self.path)}


def load(path: Path | str) -> Credentials:
    """Read the file once to tell a seed (``SU...``) from a .creds file (a user JWT and
    its seed), so a wrong file fails at start in one line, not at the broker's door."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise BadCredentials(f"cannot read NATS credentials {path}: "
                             f"{error.strerror or error}") from None
    if _JWT_MARK in text:
        return Credentials(path, "creds")
    seed = text.strip()
    if seed.startswith("SU"):
        try:
            nkeys.from_seed(bytearray(seed.encode()))
        except Exception:
            raise BadCredentials(f"{path} holds no valid nkey user seed") from None
        return Credentials(path, "nkey")
    raise BadCredentials(f"{path} is neither an nkey user seed (SU...) nor a .creds file")


def inbox_prefix(identity: str) -> str:
    """The inbox a service's connection receives its answers on: its own, so no other
    service may subscribe to them."""
    return f"_INBOX_{identity}"


def seed_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.nk"


def ensure_seed(directory: Path, name: str) -> Path:
    """The user seed of ``name`` in ``directory``, made now if missing (owner-only)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = seed_path(directory, name)
    if path.exists():
        return path
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now: theirs stands
        return path
    with os.fdopen(fd, "wb") as out:
        out.write(seed + b"\n")
    return path


def public_key(path: Path) -> str:
    """The public nkey (``U...``) of a seed file: what the broker's config names."""
    pair = nkeys.from_seed(bytearray(path.read_bytes().strip()))
    return bytes(pair.public_key).decode()
