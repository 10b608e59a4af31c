"""Where the read side queries: ``MEMSAGA_READ_DATABASE_URL``, else the event store's pool.

Either way every read-model query runs as ``memsaga_reader`` for one user
(:func:`projections.row_security.as_user`); a login of its own for reads keeps the owner's
credentials out of processes that only read (docs/privacy.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from memsaga.bootstrap import create_pool
from memsaga.settings import Settings


@contextlib.asynccontextmanager
async def read_pool(
    settings: Settings, main: asyncpg.Pool, *, max_size: int = 4
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on ``MEMSAGA_READ_DATABASE_URL`` (closed after), or ``main`` when it is not set.

    :raises DatabaseUnreachable: the read DSN's server cannot be reached.
    """
    if settings.read_database_url is None:
        yield main
        return
    pool = await create_pool(
        settings.model_copy(update={"database_url": settings.read_database_url}),
        min_size=1,
        max_size=max_size,
    )
    try:
        yield pool
    finally:
        await pool.close()
