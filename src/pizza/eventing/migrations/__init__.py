"""Versioned schemas: the kernel's tables and each service's, upgraded by Alembic.

A service's database (its SQLite file, or its PostgreSQL schema) holds two migration
chains, both recorded in one ``alembic_version`` table inside that database (on
PostgreSQL in the service's schema: the connection's search_path, as for its tables):

* the **kernel chain** (``versions/`` beside this file): the outbox and inbox every service
  gets. One revision here changes them in every service's database, so a kernel change is
  written once, not seven times;
* the **service chain**: ``migrations/versions/`` beside the module that holds the
  service's ``metadata`` (its ``tables.py``), so a service's schema history lives with the
  service, as its tables do.

Each chain's first revision (its *baseline*) is the schema of the last release made by
``create_all``, declared by its ``tables()``. A database that release made has tables but
no recorded revision: it is *adopted* (what it lacks of the baseline is added, then it is
stamped at the baseline) and then upgraded like any other.

Tables of a toolkit user's service with no migrations folder are still made by
``create_all`` (nothing to alter them with): migrations are how a schema changes safely.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext, MigrationInfo
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, inspect

HERE = Path(__file__).parent
KERNEL_VERSIONS = HERE / "versions"
KERNEL = "kernel"
VERSION_TABLE = "alembic_version"

# Alembic says "Context impl ...", "setup plugin ..." at INFO on every start of every
# service; what was done is said by us, in one line (Report.summary). A level the user
# set for Alembic wins.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Chain:
    """One migration chain: a folder of revisions and the tables they build."""

    label: str  # the branch label of its first revision: "kernel" or the service's name
    versions: Path
    metadata: MetaData


@dataclass(frozen=True)
class Change:
    """One thing done to a database's schema."""

    kind: str  # "adopted" (stamped at a baseline), "upgraded"
    revision: str
    description: str


@dataclass
class Report:
    """What one start or ``pizza migrate`` did to one database."""

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    changes: list[Change] = field(default_factory=list)
    created_without_migrations: list[str] = field(default_factory=list)
    newer: list[str] = field(default_factory=list)  # recorded revisions unknown here

    def summary(self) -> str:
        """One line: what was done (revision ids), or that the schema was up to date."""
        at = ", ".join(self.after) or "no revision"
        if self.newer:
            return (f"left as it is: at {at}, and {', '.join(self.newer)} is newer than "
                    "this release (a newer release upgraded it)")
        if not self.changes:
            return f"up to date at {at}"
        adopted = [c.revision for c in self.changes if c.kind == "adopted"]
        applied = [c.revision for c in self.changes if c.kind == "upgraded"]
        if not self.before and not adopted:
            return f"new database, schema created at {at}"
        parts = []
        if adopted:
            parts.append(f"adopted tables made before migrations at {', '.join(adopted)}")
        if applied:
            parts.append(f"applied {', '.join(applied)}")
        return f"{'; '.join(parts)}; now at {at}"


def kernel_chain(metadata: MetaData) -> Chain:
    return Chain(KERNEL, KERNEL_VERSIONS, metadata)


def service_chain(service: str, metadata: MetaData | None) -> Chain | None:
    """The chain of a service's tables: ``metadata.info["migrations"]`` if given, else the
    folder ``migrations/versions`` beside the module whose global ``metadata`` it is."""
    if metadata is None:
        return None
    folder = metadata.info.get("migrations")
    if folder is None:
        folder = _beside_tables_module(metadata)
    if folder is None:
        return None
    versions = Path(folder)
    return Chain(_label(versions) or service, versions, metadata)


def _beside_tables_module(metadata: MetaData) -> Path | None:
    for module in list(sys.modules.values()):
        try:
            if getattr(module, "metadata", None) is not metadata:
                continue
            filename = getattr(module, "__file__", None)
        except Exception:  # an odd module object; not ours
            continue
        if filename:
            versions = Path(filename).parent / "migrations" / "versions"
            if versions.is_dir():
                return versions
    return None


@functools.cache
def _label(versions: Path) -> str | None:
    """The branch label that a chain's first revision declares (read once a process)."""
    script = ScriptDirectory(str(HERE), version_locations=[str(versions)])
    for base in script.get_bases():
        labels = script.get_revision(base).branch_labels if base else ()
        if labels:
            return sorted(labels)[0]
    return None


def config(chains: Sequence[Chain], connection: Connection | None = None,
           **attributes: Any) -> Config:
    """An Alembic Config for these chains, with no ini file: ``env.py`` beside this file
    reads the connection and options from ``config.attributes``."""
    cfg = Config(cmd_opts=argparse.Namespace(quiet=True))  # we say what was done
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations",
                        os.pathsep.join(str(chain.versions) for chain in chains))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes.update(connection=connection, chains=list(chains),
                          changes=[], **attributes)
    return cfg


def recorded(connection: Connection) -> tuple[str, ...]:
    """The revisions in the database's version table (none if it has no such table)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return tuple(sorted(context.get_current_heads()))


def upgrade(connection: Connection, chains: Sequence[Chain]) -> Report:
    """Bring the database to the head of every chain, in the caller's transaction.

    A chain with no recorded revision whose tables already exist (made by the release
    before migrations, with ``create_all``) is completed to its baseline and stamped
    there first, so its data stays and only what came after the baseline runs. A
    database that records a revision this code does not know (a newer release upgraded
    it) is left as it is (``Report.newer``).
    """
    cfg = config(chains, connection)
    script = ScriptDirectory.from_config(cfg)
    report = Report(before=recorded(connection))
    report.newer = [revision for revision in report.before
                    if revision not in known(script)]
    if report.newer:  # a newer release upgraded it (rolling deploy, rollback): run on it
        report.after = report.before
        return report
    existing = set(inspect(connection).get_table_names())
    adopt: list[Script] = []
    for chain in chains:
        revisions = chain_revisions(script, chain)
        if set(report.before) & {rev.revision for rev in revisions}:
            continue
        if existing & set(chain.metadata.tables):
            adopt.append(baseline(script, chain))
    if adopt:
        for rev in adopt:
            added = complete(connection, rev)
            report.changes.append(Change("adopted", rev.revision, "tables made before "
                                         "migrations" + (f"; added {', '.join(added)}"
                                                         if added else "")))
        command.stamp(cfg, [rev.revision for rev in adopt])
    command.upgrade(cfg, "heads")
    report.changes += cfg.attributes["changes"]
    report.after = recorded(connection)
    return report


def known(script: ScriptDirectory) -> set[str]:
    return {rev.revision for rev in script.walk_revisions()}


def complete(connection: Connection, baseline: Script) -> list[str]:
    """Add what is missing of a baseline to a database made before migrations: its
    tables, and the indexes of tables that exist (create_all skips those), so a database
    an older release made reaches the baseline too before it is stamped there. The names
    of what was added."""
    declared = getattr(baseline.module, "tables", None)
    if declared is None:
        return []
    metadata: MetaData = declared()
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    added = [name for name in metadata.tables if name not in existing]
    metadata.create_all(connection, checkfirst=True)
    for table in metadata.tables.values():
        if table.name not in existing:
            continue
        have = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            if index.name not in have:
                index.create(connection)
                added.append(str(index.name))
    return added


def chain_revisions(script: ScriptDirectory, chain: Chain) -> list[Script]:
    """The chain's revisions, oldest first."""
    folder = chain.versions.resolve()
    mine = [rev for rev in script.walk_revisions()
            if rev.path is not None and Path(rev.path).resolve().parent == folder]
    return list(reversed(mine))


def baseline(script: ScriptDirectory, chain: Chain) -> Script:
    revisions = chain_revisions(script, chain)
    if not revisions or revisions[0].down_revision is not None:
        raise RuntimeError(f"{chain.versions} has no first revision")
    return revisions[0]


def run_env(context: EnvironmentContext | ModuleType) -> None:
    """What ``env.py`` does: migrate the connection that the caller handed over."""
    context = cast(EnvironmentContext, context)  # env.py hands over alembic.context
    cfg = context.config
    connection = cfg.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError("pizza's migrations run on a connection (Database.create or "
                           "`pizza migrate`), not offline")
    chains: list[Chain] = cfg.attributes["chains"]
    target = cfg.attributes.get("target")  # the chain a new revision is for
    changes: list[Change] = cfg.attributes["changes"]

    def applied(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any],
                run_args: Mapping[str, Any]) -> None:
        if not step.is_stamp and step.is_upgrade:
            for revision in step.up_revision_ids:
                script = cast(Script | None, step.up_revision)
                doc = script.doc if script is not None else ""
                changes.append(Change("upgraded", revision, doc.strip().splitlines()[0]
                                      if doc.strip() else "no description"))

    others = {name for chain in chains if chain is not target
              for name in chain.metadata.tables}

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        # A new revision of one chain never touches the tables of the other.
        return not (type_ == "table" and name in others)

    context.configure(
        connection=connection,
        target_metadata=target.metadata if target is not None else None,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters a table by copying it: batch mode
        compare_type=True,
        include_name=include_name,
        on_version_apply=applied,
        process_revision_directives=cfg.attributes.get("directives"),
    )
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def scratch(chains: Sequence[Chain]) -> Iterator[Connection]:
    """A throwaway SQLite database migrated to the heads of the chains, in a transaction."""
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'scratch.db'}")
        try:
            with engine.begin() as connection:
                upgrade(connection, chains)
                yield connection
        finally:
            engine.dispose()


def unmigrated(chains: Sequence[Chain], only: Chain | None = None) -> list[Any]:
    """What the tables modules declare that the migrations do not make (Alembic's
    autogenerate comparison against a scratch database): empty when none is missing.
    ``only``: compare that chain's tables alone."""
    with scratch(chains) as connection:
        return differences(connection, [only] if only is not None else chains,
                           ignore=[chain for chain in chains if chain is not only]
                           if only is not None else ())


def new_revision(chains: Sequence[Chain], label: str, message: str) -> Path | None:
    """Write the next revision of the chain ``label``: what its tables module says that
    its migrations do not make yet, found by Alembic's autogenerate against a scratch
    SQLite database migrated to the heads. None when there is nothing to write."""
    target = next((chain for chain in chains if chain.label == label), None)
    if target is None:
        raise ValueError(f"no migration chain named {label!r}")

    def keep_if_changed(_context: Any, _revision: Any, directives: list[Any]) -> None:
        if directives and directives[0].upgrade_ops.is_empty():
            directives[:] = []

    written: list[Path] = []
    with scratch(chains) as connection:
        cfg = config(chains, connection, target=target, directives=keep_if_changed)
        number = len(chain_revisions(ScriptDirectory.from_config(cfg), target)) + 1
        result = command.revision(
            cfg, message=message, autogenerate=True, head=f"{label}@head",
            rev_id=f"{label}_{number:04d}", version_path=str(target.versions))
        for made in result if isinstance(result, list) else [result]:
            if made is not None and made.path:
                written.append(Path(made.path))
    if not written:
        return None
    _tidy(written[0])
    return written[0]


def _tidy(path: Path) -> None:
    """Autogenerate's lines can be long: let ruff fix and format the new file, if here."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        return
    import subprocess

    for args in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        subprocess.run([ruff, *args, str(path)], check=False, capture_output=True)


def history(connection: Connection,
            chains: Sequence[Chain]) -> list[tuple[Chain, Script, bool]]:
    """Every revision of every chain, oldest first, and whether the database has it."""
    cfg = config(chains, connection)
    script = ScriptDirectory.from_config(cfg)
    heads = [head for head in recorded(connection) if head in known(script)]
    applied: set[str] = set()
    for head in heads:
        applied |= {rev.revision for rev in script.iterate_revisions(head, "base")
                    if rev is not None}
    return [(chain, rev, rev.revision in applied)
            for chain in chains for rev in chain_revisions(script, chain)]


def differences(connection: Connection, chains: Iterable[Chain], *,
                ignore: Iterable[Chain] = ()) -> list[Any]:
    """What the chains' tables modules declare that the database does not have (or the
    other way round), by Alembic's autogenerate comparison; the tables of the ``ignore``
    chains are left out. Empty when the migrations are complete."""
    from alembic.autogenerate import compare_metadata

    others = {name for chain in ignore for name in chain.metadata.tables}

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return not (type_ == "table" and name in others)

    context = MigrationContext.configure(connection, opts={
        "compare_type": True, "version_table": VERSION_TABLE, "include_name": include_name})
    every: Any = [chain.metadata for chain in chains]  # Alembic takes a list of MetaData
    return list(compare_metadata(context, every))


__all__ = ["KERNEL", "Chain", "Change", "Report", "baseline", "chain_revisions", "complete",
           "config", "differences", "history", "kernel_chain", "new_revision", "recorded",
           "scratch", "service_chain", "unmigrated", "upgrade"]
