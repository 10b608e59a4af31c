"""The event store's pool: a borrow that only appended goes back without the reset round trip,
every other borrow is reset, and an append really leaves the session as it found it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from eventstore import (
    NO_STREAM,
    EventStoreConnection,
    PostgresEventStore,
    WrongExpectedVersion,
    create_pool,
)
from eventstore.pool import reset_session
from tests.eventstore.conftest import noted, stream
from tests.eventstore.schemas import make_registry


class SpiedReset:
    """The pool's reset hook, recording for each release whether the borrow was marked clean."""

    def __init__(self) -> None:
        self.skipped: list[bool] = []

    async def __call__(self, conn: asyncpg.Connection) -> None:
        assert isinstance(conn, EventStoreConnection)
        clean = conn.take_session_clean()
        self.skipped.append(clean)
        if clean:
            conn.mark_session_clean()  # put the mark back for the real hook to consume
        await reset_session(conn)


@pytest_asyncio.fixture
async def one_connection(eventstore_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection, so that every borrow sees the session the previous one left."""
    pool = await create_pool(eventstore_dsn, min_size=1, max_size=1)
    yield pool
    await pool.close()


async def test_a_session_marked_clean_skips_the_reset_once(one_connection: asyncpg.Pool) -> None:
    async with one_connection.acquire() as conn:
        await conn.execute("SET work_mem = '7MB'")
        conn.mark_session_clean()  # a lie, to make the skipped reset visible
    async with one_connection.acquire() as conn:
        assert await conn.fetchval("SHOW work_mem") == "7MB"  # not reset: the mark was taken
    async with one_connection.acquire() as conn:
        assert await conn.fetchval("SHOW work_mem") != "7MB"  # reset as usual


async def test_only_successful_appends_mark_their_borrow_clean(eventstore_dsn: str) -> None:
    spy = SpiedReset()
    pool = await asyncpg.create_pool(
        eventstore_dsn, min_size=1, max_size=1, connection_class=EventStoreConnection, reset=spy
    )
    try:
        store = PostgresEventStore(pool, make_registry())
        sid = stream()
        await store.append(sid, [noted("one")], expected_version=NO_STREAM)
        await store.append(sid, [noted("two"), noted("three")], expected_version=1)
        await store.read_stream(sid)
        with pytest.raises(WrongExpectedVersion):
            await store.append(sid, [noted("late")], expected_version=1)
        await store.append(sid, [noted("four")], expected_version=3)
        async with pool.acquire() as conn, conn.transaction():  # the caller's borrow: its to reset
            await store.append(sid, [noted("five")], expected_version=4, conn=conn)
    finally:
        await pool.close()
    assert spy.skipped == [True, True, False, False, True, False]


_SETTINGS = "SELECT current_setting('enable_seqscan') AS seqscan, current_setting('jit') AS jit"


async def test_an_append_leaves_no_session_state_behind(one_connection: asyncpg.Pool) -> None:
    async with one_connection.acquire() as conn:
        defaults = await conn.fetchrow(_SETTINGS)
    store = PostgresEventStore(one_connection, make_registry())
    sid = stream()
    await store.append(sid, [noted("one")], expected_version=NO_STREAM)
    await store.append(sid, [noted("two"), noted("three")], expected_version=1)
    async with one_connection.acquire() as conn:  # the session the appends left, not reset
        after = await conn.fetchrow(_SETTINGS)
        locks = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        in_transaction = conn.is_in_transaction()
    assert dict(after) == dict(defaults)
    assert locks == 0
    assert not in_transaction


async def test_a_plain_asyncpg_pool_still_works_and_is_always_reset(eventstore_dsn: str) -> None:
    pool = await asyncpg.create_pool(eventstore_dsn, min_size=1, max_size=1)
    try:
        store = PostgresEventStore(pool, make_registry())
        result = await store.append(stream(), [noted("plain")], expected_version=NO_STREAM)
        assert result.last_version == 1
        async with pool.acquire() as conn:
            await conn.execute("SET work_mem = '7MB'")
        assert await pool.fetchval("SHOW work_mem") != "7MB"
    finally:
        await pool.close()
