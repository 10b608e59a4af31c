"""Helpers shared by the test packages (fixtures stay in the conftest files)."""

from __future__ import annotations

import asyncpg

from eventstore import MigrationSource, migrate
from memsaga.bootstrap import MIGRATION_SOURCES
from memsaga.devstack.databases import DatabaseFactory


async def migrated_database(
    fresh_database: DatabaseFactory, sources: list[MigrationSource] = MIGRATION_SOURCES
) -> str:
    """A new database with ``sources`` applied (every memsaga schema by default); its DSN."""
    dsn = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, sources)
    finally:
        await conn.close()
    return dsn
