"""PostgreSQL extensions a projection needs: checked, and created, before its tables are."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore.postgres import Connection
from projections.base import Projection
from projections.errors import ExtensionMissing

_AVAILABLE = "SELECT name FROM pg_available_extensions WHERE name = ANY($1::text[])"


async def missing_extensions(conn: Connection, projection: Projection) -> list[str]:
    """The extensions ``projection`` needs that this server cannot provide."""
    if not projection.extensions:
        return []
    available = {row["name"] for row in await conn.fetch(_AVAILABLE, list(projection.extensions))}
    return [name for name in projection.extensions if name not in available]


async def create_extensions(conn: Connection, projection: Projection) -> None:
    """Create what ``projection`` needs unless it exists. :raises ExtensionMissing: the server lacks one."""
    if missing := await missing_extensions(conn, projection):
        raise ExtensionMissing(projection.name, missing[0])
    for name in projection.extensions:
        await conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')


async def split_by_extensions(
    pool: asyncpg.Pool, projections: Sequence[Projection]
) -> tuple[list[Projection], list[ExtensionMissing]]:
    """The projections this server can run, and why each of the others cannot."""
    runnable: list[Projection] = []
    refused: list[ExtensionMissing] = []
    async with pool.acquire() as conn:
        for projection in projections:
            if missing := await missing_extensions(conn, projection):
                refused.append(ExtensionMissing(projection.name, missing[0]))
            else:
                runnable.append(projection)
    return runnable, refused
