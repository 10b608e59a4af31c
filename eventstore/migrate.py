"""Versioned SQL migrations: numbered ``NNNN_name.sql`` files, each applied once in its own
transaction, recorded with a checksum, serialised by an advisory lock (safe from two
processes at once, and safe to run twice).

After a source's numbered files come its function files (``functions/<name>.sql``): each holds
the current ``CREATE OR REPLACE`` of one SQL function and is applied again whenever its text
changes (as Message DB keeps one file per function), so a function has one definition, not one
per migration that touched it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from eventstore.errors import MigrationChecksumMismatch, MigrationError

_LOCK_KEY = 0x6D656D73616761  # "memsaga"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTION_FILE = re.compile(r"[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    source: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FunctionFile:
    """One function file; ``name`` is its path in the package (``functions/<name>.sql``)."""

    source: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


Applied = Migration | FunctionFile
"""What :func:`migrate` applied: a numbered migration, or a new or changed function file."""


@dataclass(frozen=True, slots=True)
class MigrationSource:
    """A named folder of migrations inside a package, e.g. ``("eventstore", "eventstore", "migrations")``,
    and its folder of function files (``None``: none; a missing folder holds none)."""

    name: str
    package: str
    folder: str = "migrations"
    functions: str | None = "functions"

    def function_files(self) -> list[FunctionFile]:
        """The folder's function files, by name. :raises MigrationError: a misnamed file."""
        if self.functions is None:
            return []
        root: Traversable = resources.files(self.package) / self.functions
        if not root.is_dir():
            return []
        found = []
        for entry in root.iterdir():
            if not entry.name.endswith(".sql"):
                continue
            if not _FUNCTION_FILE.fullmatch(entry.name):
                raise MigrationError(f"{self.name}: {entry.name} is not named lower_snake.sql")
            found.append(FunctionFile(self.name, f"{self.functions}/{entry.name}", entry.read_text()))
        return sorted(found, key=lambda f: f.name)

    def migrations(self) -> list[Migration]:
        """The folder's migrations, by version. :raises MigrationError: a misnamed or duplicate file."""
        root: Traversable = resources.files(self.package) / self.folder
        found: dict[int, Migration] = {}
        for entry in root.iterdir():
            if not entry.name.endswith(".sql"):
                continue
            match = _FILE.match(entry.name)
            if match is None:
                raise MigrationError(f"{self.name}: {entry.name} is not named NNNN_lower_snake.sql")
            version = int(match.group(1))
            if version in found:
                raise MigrationError(f"{self.name}: two migrations have version {version}")
            found[version] = Migration(self.name, version, entry.name, entry.read_text())
        return [found[v] for v in sorted(found)]


EVENTSTORE_MIGRATIONS = MigrationSource("eventstore", "eventstore")


async def migrate(conn: asyncpg.Connection, sources: list[MigrationSource]) -> list[Applied]:
    """Apply every pending migration of ``sources`` in order, each source's new or changed function
    files after its migrations; returns what it applied now.

    :raises MigrationChecksumMismatch: an applied numbered file was edited since.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT source, version, checksum FROM memsaga.schema_migrations")
        applied = {(r["source"], r["version"]): r["checksum"] for r in rows}
        rows = await conn.fetch("SELECT source, name, checksum FROM memsaga.schema_functions")
        defined = {(r["source"], r["name"]): r["checksum"] for r in rows}
        done: list[Applied] = []
        for source in sources:
            done.extend(await _apply_migrations(conn, source, applied))
            done.extend(await _apply_functions(conn, source, defined))
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


_BOOKKEEPING = """CREATE SCHEMA IF NOT EXISTS memsaga;
    CREATE TABLE IF NOT EXISTS memsaga.schema_migrations (
        source     text        NOT NULL,
        version    integer     NOT NULL,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, version));
    CREATE TABLE IF NOT EXISTS memsaga.schema_functions (
        source     text        NOT NULL,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, name))"""


async def _apply_migrations(
    conn: asyncpg.Connection, source: MigrationSource, applied: dict[tuple[str, int], str]
) -> list[Migration]:
    done = []
    for migration in source.migrations():
        checksum = applied.get((migration.source, migration.version))
        if checksum is not None:
            if checksum != migration.checksum:
                raise MigrationChecksumMismatch(migration.source, migration.version, migration.name)
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO memsaga.schema_migrations (source, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                migration.source,
                migration.version,
                migration.name,
                migration.checksum,
            )
        done.append(migration)
    return done


async def _apply_functions(
    conn: asyncpg.Connection, source: MigrationSource, defined: dict[tuple[str, str], str]
) -> list[FunctionFile]:
    done = []
    for function in source.function_files():
        if defined.get((function.source, function.name)) == function.checksum:
            continue
        async with conn.transaction():
            await conn.execute(function.sql)
            await conn.execute(
                """INSERT INTO memsaga.schema_functions (source, name, checksum) VALUES ($1, $2, $3)
                ON CONFLICT (source, name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()""",
                function.source,
                function.name,
                function.checksum,
            )
        done.append(function)
    return done


async def applied_migrations(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """What ``memsaga.schema_migrations`` records (empty before the first migration)."""
    exists = await conn.fetchval("SELECT to_regclass('memsaga.schema_migrations') IS NOT NULL")
    if not exists:
        return []
    return list(
        await conn.fetch(
            "SELECT source, version, name, applied_at FROM memsaga.schema_migrations ORDER BY 1, 2"
        )
    )
