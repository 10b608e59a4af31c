"""The ``memories`` read model, version 2: lifecycle states equal the reference fold, whatever the
delivery order; point-in-time queries equal a Python fold of the events."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import InMemoryEventStore, PostgresEventStore, RecordedEvent
from memsaga.bootstrap import build_registry
from memsaga.devstack import DatabaseFactory
from projections import MEMORIES, ensure_built
from projections.base import Tables
from projections.memories import InvalidMemoryQuery, ReadModelOutdated, query_memories
from projections.memory_lifecycle import fold, step_of
from sagas.memory_extraction.lifecycle import memory_state
from tests.projections.lifecycles import (
    WORLD,
    by_memory,
    expected_listing,
    ops_strategy,
    plan_stream,
)
from tests.support import migrated_database

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ALL = ("current", "superseded", "invalidated")


def ticking_clock(start: datetime = T0) -> Callable[[], datetime]:
    """A clock for the in-memory store: one second later at every append."""
    ticks = itertools.count()
    return lambda: start + timedelta(seconds=next(ticks))


async def recorded_streams(lives: list[Any], user: str, order: list[int]) -> list[RecordedEvent]:
    """Append each life's events to an in-memory store, interleaved by ``order`` (stream indexes)."""
    store = InMemoryEventStore(build_registry(), clock=ticking_clock())
    planned = [
        plan_stream(f"{user}-m{i}", user, ops, at=T0, stated=i % 2 == 0) for i, ops in enumerate(lives)
    ]
    queues = [list(p.events) for p in planned]
    for index in order:
        if queues[index]:
            await store.append(f"memory-{planned[index].memory_id}", [queues[index].pop(0)])
    return [e async for batch in store.read_all() for e in batch]


def tokens(lives: list[Any]) -> list[int]:
    """One token per event of each life (its creation and its operations)."""
    return [i for i, ops in enumerate(lives) for _ in range(len(ops) + 1)]


# --- The fold of narrow rows is the reference fold (no database) ---------------------------------


@settings(max_examples=200, deadline=None)
@given(ops=ops_strategy)
def test_the_fold_of_lifecycle_rows_is_the_reference_fold(ops: Any) -> None:
    events = asyncio.run(recorded_streams([ops], "u", [0] * (len(ops) + 1)))
    states = fold(step_of(e) for e in events)
    for n, state in enumerate(states, start=1):
        reference = memory_state(events[:n])
        assert reference is not None
        got = (state.status, state.valid_to, state.superseded_by, state.ended_by_event_id)
        assert got == (
            reference.status,
            reference.valid_to,
            reference.superseded_by,
            reference.ended_by_event_id,
        )


# --- The read model, on PostgreSQL ---------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(fresh_database: DatabaseFactory) -> AsyncIterator[tuple[asyncpg.Pool, Tables]]:
    """A database whose active ``memories`` read model starts empty; tests use users of their own."""
    dsn = await migrated_database(fresh_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        active = await ensure_built(pool, PostgresEventStore(pool, build_registry()), MEMORIES)
        yield pool, MEMORIES.tables_at(active.version)
    finally:
        await pool.close()


async def deliver(
    pool: asyncpg.Pool, tables: Tables, events: list[RecordedEvent], size: int, batched: bool
) -> None:
    """Apply ``events`` in the given order, ``size`` per transaction, runs of one type together
    (as the runner does), through the batch handlers or one event at a time."""
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        async with pool.acquire() as conn, conn.transaction():
            for event_type, run in itertools.groupby(chunk, key=lambda e: e.event_type):
                run_events = list(run)
                if batched:
                    await MEMORIES.batch_handlers[event_type](conn, tables, run_events)
                else:
                    for event in run_events:
                        await MEMORIES.handlers[event_type](conn, tables, event)


def row_of_fold(events: list[RecordedEvent]) -> tuple[Any, ...]:
    state = memory_state(events)
    assert state is not None
    text = None if state.status == "retracted" else state.text
    return (
        state.status, state.valid_from, state.valid_to, state.superseded_by, state.ended_by_event_id,
        state.version, state.slot, state.value, state.polarity, state.created_event_id, state.recorded_at,
        text, state.kind, state.episode_id, state.user_id,
    )  # fmt: skip


async def rows_of(pool: asyncpg.Pool, tables: Tables, user: str) -> dict[str, tuple[Any, ...]]:
    rows = await pool.fetch(
        f"""SELECT memory_id, status, valid_from, valid_to, superseded_by, ended_by_event_id, version, slot,
                   value, polarity, created_event_id::text, recorded_at, text, kind, episode_id, user_id
            FROM {tables["memories"]} WHERE user_id = $1""",
        user,
    )
    return {r["memory_id"]: tuple(r.values())[1:] for r in rows}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lives=st.lists(ops_strategy, min_size=1, max_size=4), data=st.data())
async def test_any_delivery_order_with_repeats_ends_as_the_fold_of_the_stream(
    world: tuple[asyncpg.Pool, Tables], lives: list[Any], data: st.DataObject
) -> None:
    pool, tables = world
    user = uuid.uuid4().hex
    events = await recorded_streams(lives, user, data.draw(st.permutations(tokens(lives)), label="appends"))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=4), label="repeats")
    delivery = data.draw(st.permutations(events + repeats), label="delivery")
    size = data.draw(st.integers(min_value=1, max_value=6), label="batch size")
    await deliver(pool, tables, list(delivery), size, batched=data.draw(st.booleans(), label="batched"))

    streams = by_memory(events)
    assert await rows_of(pool, tables, user) == {m: row_of_fold(s) for m, s in streams.items()}
    # Each lifecycle row holds the state after its event: what the as-of queries read.
    rows = await pool.fetch(
        "SELECT memory_id, version, status, state_valid_to, superseded_by, recorded_until"
        f" FROM {tables['memory_lifecycle']}"
        " WHERE user_id = $1",
        user,
    )
    prefixes = {}
    for memory_id, stream in streams.items():
        for n in range(1, len(stream) + 1):
            state = memory_state(stream[:n])
            assert state is not None
            until = stream[n].recorded_at if n < len(stream) else None  # its state held until the next
            prefixes[(memory_id, n)] = (state.status, state.valid_to, state.superseded_by, until)
    assert {(r["memory_id"], r["version"]): tuple(r.values())[2:] for r in rows} == prefixes
    # The queries answer what the reference fold of the events answers.
    moments = sorted({e.recorded_at for e in events})
    as_of = data.draw(st.sampled_from([None, moments[0] - timedelta(seconds=1), *moments]), label="as of")
    valid_at = data.draw(
        st.sampled_from([None, WORLD, WORLD + timedelta(days=15), WORLD + timedelta(days=400)])
    )
    for statuses in (None, ALL, ("superseded",)):
        found = await query_memories(pool, user, as_of=as_of, valid_at=valid_at, statuses=statuses)
        wanted = statuses or (ALL if valid_at is not None else ("current",))
        expected = expected_listing(streams, as_of=as_of, valid_at=valid_at, statuses=wanted)
        assert {(m.memory_id, m.status, m.valid_to, m.superseded_by) for m in found} == expected


async def test_batches_of_creations_skip_the_fold(world: tuple[asyncpg.Pool, Tables]) -> None:
    """Creations are most events: a run of them is one statement, whatever its length."""
    pool, tables = world
    user = uuid.uuid4().hex
    events = await recorded_streams([[] for _ in range(30)], user, list(range(30)))
    sent: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        conn.add_query_logger(lambda q: sent.append(q.query))
        await MEMORIES.batch_handlers["MemoryCreated"](conn, tables, events)
        await asyncio.sleep(0)
    assert len([q for q in sent if "memsaga_read" in q]) == 1
    assert len(await query_memories(pool, user)) == 30


async def test_times_without_a_zone_and_retracted_status_are_refused(
    world: tuple[asyncpg.Pool, Tables],
) -> None:
    pool, _ = world
    with pytest.raises(InvalidMemoryQuery, match="as_of needs a time zone"):
        await query_memories(pool, "u", as_of=datetime(2026, 1, 1))
    with pytest.raises(InvalidMemoryQuery, match="valid_at needs a time zone"):
        await query_memories(pool, "u", valid_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidMemoryQuery, match="leave every read model"):
        await query_memories(pool, "u", statuses=["retracted"])
    with pytest.raises(InvalidMemoryQuery, match="unknown status gone"):
        await query_memories(pool, "u", statuses=["gone"])


async def test_a_read_model_of_version_1_asks_for_a_rebuild(fresh_database: DatabaseFactory) -> None:
    dsn = await migrated_database(fresh_database)
    conn = await asyncpg.connect(dsn)
    try:  # the columns version 1 had that matter here: no status
        await conn.execute(
            "CREATE TABLE memsaga_read.memories (memory_id text, user_id text, retracted boolean)"
        )
        with pytest.raises(ReadModelOutdated, match="project rebuild memories"):
            await query_memories(conn, "u")  # type: ignore[arg-type]
    finally:
        await conn.close()
