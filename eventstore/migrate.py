"""Versioned SQL migrations: numbered ``NNNN_name.sql`` files, each applied once in its own
transaction, recorded with a checksum, serialised by an advisory lock (safe from two
processes at once, and safe to run twice)."""

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
class MigrationSource:
    """A named folder of migrations inside a package, e.g. ``("eventstore", "eventstore", "migrations")``."""

    name: str
    package: str
    folder: str = "migrations"

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


async def migrate(conn: asyncpg.Connection, sources: list[MigrationSource]) -> list[Migration]:
    """Apply every pending migration of ``sources`` in order; returns the ones applied now.

    :raises MigrationChecksumMismatch: an applied file was edited since.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE SCHEMA IF NOT EXISTS memsaga;
            CREATE TABLE IF NOT EXISTS memsaga.schema_migrations (
                source     text        NOT NULL,
                version    integer     NOT NULL,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (source, version))"""
        )
        rows = await conn.fetch("SELECT source, version, checksum FROM memsaga.schema_migrations")
        applied = {(r["source"], r["version"]): r["checksum"] for r in rows}
        done: list[Migration] = []
        for source in sources:
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


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
