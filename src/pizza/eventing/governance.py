"""Event governance: the catalog of every message, and the schema gate that guards it.

The catalog answers "what flows on the bus, who produces it, who depends on it". The gate
answers "may this change ship": every registered type and version has a JSON Schema
snapshot committed under ``schemas/<Type>.v<version>.json``, and ``check`` compares the
code's schemas with them (``compatibility.check``). A breaking change to a published
version fails, naming the consumers it would break and the way out: a new version.

Generic kernel code: it takes a Registry and the Services, and knows no business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pizza.eventing.catalog import Message, Registry
from pizza.eventing.compatibility import MODES, Incompatibility
from pizza.eventing.compatibility import check as compare
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.personal import personal_fields
from pizza.eventing.service import Service

Key = tuple[str, int]
SNAPSHOT_NAME = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.json$")
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


# -- the catalog ----------------------------------------------------------------------------


def metadata_schema() -> dict[str, Any]:
    """The JSON Schema of ``metadata``, the part every message shares (envelope.Metadata).

    Required are the fields a reader cannot do without; the nullable ones are always
    written by our publishers but may be absent in a message from elsewhere.
    """
    nullable_string = {"type": ["string", "null"]}
    return {
        "title": "Metadata",
        "description": "What every message carries, whatever its type and version.",
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 1, "description":
                   "Made once at the point of publishing, never reused (a UUID)."},
            "type": {"type": "string", "minLength": 1, "description":
                     "The message type, e.g. OrderConfirmed."},
            "version": {"type": "integer", "minimum": 1, "description":
                        "The version of the type: the schema of data."},
            "source": {"type": "string", "minLength": 1, "description":
                       "The service that published it."},
            "time": {"type": "string", "format": "date-time", "description":
                     "When it was published, RFC 3339 in UTC."},
            "correlationId": {"type": "string", "minLength": 1, "description":
                              "Shared by every message of one story."},
            "causationId": {**nullable_string, "description":
                            "The id of the message that caused this one, or null."},
            "traceparent": {**nullable_string, "pattern": TRACEPARENT, "description":
                            "W3C trace context: 00-<trace>-<span>-<flags>."},
            "replyTo": {**nullable_string, "description":
                        "Where the answer goes (commands only), or null."},
        },
        "required": ["id", "type", "version", "source", "time", "correlationId"],
    }


def consumers(services: Iterable[Service], key: Key) -> list[str]:
    """The services with a handler for this type and version."""
    return [service.name for service in services
            if any(key in sub.handlers for sub in service.subscriptions.values())]


def producers(services: Iterable[Service], cls: type[Message]) -> list[str]:
    """Who puts it on the bus: the owner of an event or reply, the senders of a command."""
    info = cls.info
    if info.kind != "command":
        return [info.owner]
    return [service.name for service in services
            if any(sent.info.key == info.key for sent in service.sends)]


def personal_field_names(cls: type[Message]) -> list[str]:
    """The personal fields of a message (``items.*.name`` for a list's), in the wire's
    names: sealed with their data subject's key on the bus (personal.py)."""
    return [".".join(path) for path in personal_fields(cls)]


def catalog(registry: Registry, services: Sequence[Service],
            namespace: Namespace = DEFAULT) -> list[dict[str, Any]]:
    """Every message type and version: subject (in ``namespace``), producer, consumers,
    deprecation, the personal fields, schema."""
    entries = []
    for cls in registry:
        info = cls.info
        sources = producers(services, cls)
        entries.append({
            "type": info.type,
            "version": info.version,
            "kind": info.kind,
            "subject": namespace.subject(info),
            "description": info.description,
            "producer": ", ".join(sources) or None,
            "producers": sources,
            "target": info.owner if info.kind == "command" else None,
            "consumers": consumers(services, info.key),
            "deprecated": info.deprecated is not None,
            "sunset": info.deprecated.isoformat() if info.deprecated else None,
            "personal": personal_field_names(cls),
            "schema": registry.schema(cls),
        })
    return entries


# -- snapshots ------------------------------------------------------------------------------


def snapshot_path(directory: Path, key: Key) -> Path:
    return directory / f"{key[0]}.v{key[1]}.json"


def dumps(schema: dict[str, Any]) -> str:
    """The committed form: pretty, sorted keys, a trailing newline (stable diffs)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_snapshots(directory: Path) -> dict[Key, dict[str, Any]]:
    """The snapshots in ``directory`` by (type, version); other files are not ours."""
    found: dict[Key, dict[str, Any]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        match = SNAPSHOT_NAME.match(path.name)
        if match:
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not a JSON Schema snapshot: {error}") from None
            found[(match["type"], int(match["version"]))] = schema
    return found


# -- the gate -------------------------------------------------------------------------------

Status = Literal["breaking", "new", "removed"]


@dataclass
class Finding:
    """One type and version the gate stops, and why."""

    type: str
    version: int
    status: Status
    consumers: list[str]
    advice: str
    issues: list[Incompatibility] = field(default_factory=list)

    def render(self, mode: str) -> str:
        used_by = ", ".join(self.consumers) or "no known consumer"
        title = {"breaking": f"BREAKING ({mode})", "new": "NEW, not yet snapshotted",
                 "removed": "version removed"}[self.status]
        lines = [f"{self.type} v{self.version}: {title}; consumed by {used_by}"]
        lines += [f"  - field {issue.path or '(the message)'}: {issue.rule}: {issue.message}"
                  for issue in self.issues]
        lines.append(f"  way out: {self.advice}")
        return "\n".join(lines)


@dataclass
class Report:
    """What ``check`` found: the compatible versions and the ones it stops."""

    mode: str
    directory: Path
    compatible: list[Key] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def render(self) -> str:
        if self.ok:
            return f"{len(self.compatible)} schemas compatible ({self.mode}, {self.directory})"
        parts = [finding.render(self.mode) for finding in self.findings]
        parts.append(f"{len(self.findings)} problem(s), {len(self.compatible)} schemas "
                     f"compatible ({self.mode}, {self.directory})")
        return "\n\n".join(parts)


def _next_version(type_: str, keys: Iterable[Key]) -> int:
    return max(version for name, version in keys if name == type_) + 1


def check(registry: Registry, services: Sequence[Service], directory: Path | str,
          mode: str = "BACKWARD") -> Report:
    """Compare the code's schemas with the committed snapshots; ``report.ok`` if all fit."""
    mode = mode.upper()
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; use one of {', '.join(MODES)}")
    directory = Path(directory)
    code = {cls.info.key: registry.schema(cls) for cls in registry}
    snapshots = read_snapshots(directory)
    report = Report(mode, directory)
    every = set(code) | set(snapshots)
    for key in sorted(every):
        type_, version = key
        users = consumers(services, key)
        path = snapshot_path(directory, key)
        if key not in snapshots:
            report.findings.append(Finding(
                type_, version, "new", users,
                f"run `pizza events snapshot` and commit {path}"))
        elif key not in code:
            report.findings.append(Finding(
                type_, version, "removed", users,
                f"{path} exists but the code no longer declares {type_} v{version}: "
                f"restore it until its consumers have moved; once retired, delete {path} "
                "(or `pizza events snapshot --force`)"))
        else:
            issues = compare(snapshots[key], code[key], mode)
            if not issues:
                report.compatible.append(key)
                continue
            new = _next_version(type_, every)
            waiting = f" ({', '.join(users)})" if users else ""
            report.findings.append(Finding(
                type_, version, "breaking", users,
                f"publish a new version: {type_} v{new}, and keep v{version} until its "
                f"consumers{waiting} move; revert this change to v{version}", issues))
    return report


class SnapshotRefused(Exception):
    """Writing the snapshots would hide a breaking change; nothing was written."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.render())
        self.report = report


@dataclass
class Snapshots:
    """What ``snapshot`` did."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def snapshot(registry: Registry, directory: Path | str, *, force: bool = False,
             mode: str = "BACKWARD", services: Sequence[Service] = ()) -> Snapshots:
    """Write a snapshot of every registered message into ``directory``.

    A new snapshot may replace an existing one only if it is compatible (``mode``), and a
    snapshot whose version the code no longer declares stays: either is a breaking
    change, refused as a whole (SnapshotRefused) unless ``force``, which writes the new
    snapshots and deletes the stale ones.
    """
    directory = Path(directory)
    gate = check(registry, services, directory, mode)
    stopping = [f for f in gate.findings if f.status != "new"]
    if stopping and not force:
        raise SnapshotRefused(Report(mode, directory, gate.compatible, stopping))
    done = Snapshots()
    directory.mkdir(parents=True, exist_ok=True)
    for cls in registry:
        path = snapshot_path(directory, cls.info.key)
        text = dumps(registry.schema(cls))
        if path.exists() and path.read_text(encoding="utf-8") == text:
            done.unchanged.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            done.written.append(path)
    for finding in stopping:
        if finding.status == "removed":
            path = snapshot_path(directory, (finding.type, finding.version))
            path.unlink()
            done.removed.append(path)
    return done
