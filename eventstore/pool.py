"""Connection pools for the event store, whose appends skip the pool's reset round trip.

An asyncpg pool resets every connection it takes back (``SELECT pg_advisory_unlock_all();
CLOSE ALL; UNLISTEN *; RESET ALL``): one more round trip per borrow, as long as the append
itself. An append leaves nothing behind in the session (its advisory lock is released at
commit, its settings end with the function, it opens no cursor and listens to nothing), so a
connection the store borrowed only to append goes back to the pool as it came out.

The store says so with :func:`mark_session_clean` just before it releases a connection it
borrowed for a successful append; :func:`reset_session` then skips the query, once. Every
other borrow is reset as usual. Pools made elsewhere (plain ``asyncpg.create_pool``) work unchanged: their
connections have no such method and are always reset.
"""

from __future__ import annotations

from typing import Any

import asyncpg


class EventStoreConnection(asyncpg.Connection):
    """A connection that can tell its pool that its session needs no reset."""

    __slots__ = ("_session_clean",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_clean = False

    def mark_session_clean(self) -> None:
        """This borrow left the session as it found it: the pool may skip its reset, once."""
        self._session_clean = True

    def take_session_clean(self) -> bool:
        """Whether the last borrow marked the session clean (and clear the mark)."""
        clean, self._session_clean = self._session_clean, False
        return clean


def mark_session_clean(conn: object) -> None:
    """Tell the pool that this borrow of ``conn`` (a pooled connection or its proxy) left the
    session as it found it; no-op for connections of other pools, which are always reset."""
    mark = getattr(conn, "mark_session_clean", None)
    if mark is not None:
        mark()


async def reset_session(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: asyncpg's reset query, unless the borrower marked the session clean.

    asyncpg has already rolled back any open transaction and dropped listeners client-side.
    """
    if isinstance(conn, EventStoreConnection) and conn.take_session_clean():
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    """An asyncpg pool whose connections the event store can hand back without a reset.

    ``kwargs`` go to :func:`asyncpg.create_pool` (``server_settings``, ``timeout``…).
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        connection_class=EventStoreConnection,
        reset=reset_session,
        **kwargs,
    )
    return pool
