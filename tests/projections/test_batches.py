"""Batches in one savepoint: what they cost, and that a failing handler, duplicates, re-sends and
events without handler come out as if each event had its own savepoint."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections import (
    MEMORIES,
    Projection,
    ProjectionRunner,
    RebuildProgress,
    ensure_built,
    list_parked,
    rebuild,
)
from projections.base import Tables
from projections.stream import ensure_stream
from projections.subjects import MSG_ID, event_body, event_headers, event_subject
from projections.tracking import Applied, BatchFailed, apply_batch, apply_in_savepoint
from projections.versions import create_version
from tests.projections.conftest import Env, background, consumer_drained, snapshot, wait_until
from tests.projections.counter import CHOOSY, COUNTER, POISON_PREFIX, count
from tests.projections.histories import append_all, make_history

CREATED = "MemoryCreated"


async def all_events(env: Env) -> list[RecordedEvent]:
    return [e async for batch in env.store.read_all() for e in batch]


@contextlib.asynccontextmanager
async def logged(env: Env) -> AsyncIterator[tuple[asyncpg.Connection, list[str]]]:
    """A connection of its own and the statements it sends (one entry per statement)."""
    conn = await asyncpg.connect(env.dsn)
    await conn.fetch("SELECT $1::uuid[], $2::bigint[]", [], [])  # asyncpg introspects array types once
    queries: list[str] = []
    conn.add_query_logger(lambda q: queries.append(q.query))
    try:
        yield conn, queries
    finally:
        await conn.close()


async def apply_logged(
    env: Env, projection: Projection, events: list[RecordedEvent], *, version: int = 1, **kwargs: Any
) -> tuple[list[Applied], list[str]]:
    """``apply_batch`` to ``version`` in a transaction of its own; its results and its statements."""
    async with logged(env) as (conn, queries), conn.transaction():
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not during, the query
        queries.clear()
        tables = projection.tables_at(version)
        results = await apply_batch(conn, projection, version, tables, events, **kwargs)
        await asyncio.sleep(0)
        sent = list(queries)
    return results, sent


async def recorded(env: Env, name: str, version: int = 1) -> set[tuple[uuid.UUID, int]]:
    """(event id, position) of the events ``projection_applied`` holds for one version."""
    rows = await env.pool.fetch(
        "SELECT event_id, position FROM memsaga.projection_applied WHERE name = $1 AND version = $2",
        name,
        version,
    )
    return {(r["event_id"], r["position"]) for r in rows}


async def counter_state(env: Env, version: int = 1) -> tuple[int, int, int]:
    """(n, rows in counter_seen, distinct event ids in it)."""
    tables = COUNTER.tables_at(version)
    n = await env.pool.fetchval(f"SELECT n FROM {tables['counter']}")
    row = await env.pool.fetchrow(f"SELECT count(*), count(DISTINCT event_id) FROM {tables['counter_seen']}")
    assert row is not None
    return int(n), int(row[0]), int(row[1])


async def test_a_batch_costs_one_savepoint_and_one_insert_besides_its_handlers(env: Env) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    await append_all(env.store, make_history(seed=61, sagas=6))
    events = await all_events(env)
    created = [e for e in events if e.event_type == CREATED]
    assert 0 < len(created) < len(events)

    results, sent = await apply_logged(env, CHOOSY, events)
    assert results == [Applied(e.event_type == CREATED) for e in events]
    assert sent[0].startswith("SAVEPOINT") and sent[-1].startswith("RELEASE SAVEPOINT")
    assert "memsaga.projection_applied" in sent[1] and "unnest" in sent[1]
    assert len(sent) == 3 + len(created)  # one statement per handled event, none for the others
    assert all("memsaga_read" in q for q in sent[2:-1])
    # Only handled events are recorded as applied.
    assert await recorded(env, CHOOSY.name) == {(e.event_id, e.position) for e in created}
    assert await env.pool.fetchval(f"SELECT count(*) FROM {CHOOSY.tables_at(1)['choosy']}") == len(created)

    # The same batch again (a re-send): recorded already, so no handler runs.
    again, sent = await apply_logged(env, CHOOSY, events)
    assert again == [Applied(False)] * len(events)
    assert len(sent) == 3 and "memsaga.projection_applied" in sent[1]

    # Events without a handler cost nothing at all, not even a savepoint.
    unhandled = [e for e in events if e.event_type != CREATED]
    results, sent = await apply_logged(env, CHOOSY, unhandled)
    assert results == [Applied(False)] * len(unhandled) and sent == []


def recorder() -> tuple[list[uuid.UUID], Callable[[RecordedEvent], contextlib.AbstractContextManager[None]]]:
    """An ``around`` for apply_batch that records the ids of the events it wraps, in order."""
    handled: list[uuid.UUID] = []

    @contextlib.contextmanager
    def around(event: RecordedEvent) -> Iterator[None]:
        handled.append(event.event_id)
        yield

    return handled, around


async def test_a_poison_event_mid_batch_fails_alone_and_the_others_apply(env: Env) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    await append_all(env.store, make_history(seed=62, sagas=6, poison_text=f"{POISON_PREFIX} mid"))
    events = await all_events(env)
    [poison] = [e for e in events if e.payload.get("text", "").startswith(POISON_PREFIX)]
    others = [e for e in events if e is not poison]
    middle = len(others) // 2
    batch = [*others[:middle], poison, *others[middle:]]
    good = [e for e in others if e.event_type == CREATED]
    assert len(good) >= 3
    batch.append(good[0])  # and a duplicate: still applied once
    handled, around = recorder()

    results, _ = await apply_logged(env, CHOOSY, batch, around=around)
    errors = [(i, r.error) for i, r in enumerate(results) if r.error is not None]
    assert len(errors) == 1 and errors[0][0] == middle
    assert errors[0][1] is not None and errors[0][1].startswith(
        f"ValueError: cannot digest '{POISON_PREFIX} mid'"
    )
    assert [r.applied for r in results] == [
        e.event_type == CREATED and e is not poison for e in batch[:-1]
    ] + [False]
    assert await recorded(env, CHOOSY.name) == {(e.event_id, e.position) for e in good}
    rows = await env.pool.fetch(f"SELECT memory_id FROM {CHOOSY.tables_at(1)['choosy']}")
    assert sorted(r[0] for r in rows) == sorted(e.payload["memory_id"] for e in good)
    assert handled.count(poison.event_id) >= 1 and set(handled) == {e.event_id for e in [*good, poison]}


async def test_duplicate_ids_in_one_batch_apply_once_at_their_first_occurrence(env: Env) -> None:
    await ensure_built(env.pool, env.store, COUNTER)
    await append_all(env.store, make_history(seed=63, sagas=3))
    events = await all_events(env)
    batch = [events[0], *events, *events[::3], events[-1]]
    handled, around = recorder()

    results, _ = await apply_logged(env, COUNTER, batch, around=around)
    firsts: set[uuid.UUID] = set()
    expected = []
    for event in batch:
        expected.append(Applied(event.event_id not in firsts))
        firsts.add(event.event_id)
    assert results == expected
    assert handled == [e.event_id for e in events]  # each handler once, in input order
    assert await counter_state(env) == (len(events), len(events), len(events))
    assert await recorded(env, COUNTER.name) == {(e.event_id, e.position) for e in events}


async def test_a_rebuild_parks_a_poison_event_alone(env: Env) -> None:
    history = make_history(seed=64, sagas=12, poison_text=f"{POISON_PREFIX} rebuilt")
    await append_all(env.store, history)
    events = await all_events(env)
    [poison] = [e for e in events if e.payload.get("text", "").startswith(POISON_PREFIX)]
    created = history.count((CREATED,))

    result = await rebuild(env.pool, env.store, CHOOSY, batch_size=7)
    assert (result.version, result.applied, result.parked) == (1, created - 1, 1)
    assert result.position == len(events) == await env.store.head_position()
    [parked] = await list_parked(env.pool)
    assert (parked.event_id, parked.version, parked.deliveries, parked.position) == (
        poison.event_id,
        1,
        1,
        poison.position,
    )
    assert parked.error_line == f"ValueError: cannot digest '{POISON_PREFIX} rebuilt'"
    assert len((await snapshot(env.pool, CHOOSY))["choosy"]) == created - 1


@pytest.mark.parametrize("batch_size", [7, 500])
async def test_a_rebuild_equals_applying_event_by_event(
    env: Env, batch_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Progress only at the start and at the end (``projections.rebuild`` is also a function).
    monkeypatch.setattr(importlib.import_module("projections.rebuild"), "REPORT_INTERVAL", 3600.0)
    await append_all(env.store, make_history(seed=65, sagas=25))
    events = await all_events(env)
    head = await env.store.head_position()
    assert len(events) == head and 2 * 7 < head < 500
    for projection in (MEMORIES, COUNTER):
        progress: list[RebuildProgress] = []
        result = await rebuild(
            env.pool, env.store, projection, batch_size=batch_size, progress=progress.append
        )
        assert result.version == 1 and result.position == head and result.parked == 0
        # Reported at the start (from the checkpoint) and when caught up; nothing between.
        assert [(p.position, p.head) for p in progress] == [(0, head), (head, head)]

        # The same events, one savepoint and one transaction each, into a version of their own.
        async with env.pool.acquire() as conn:
            async with conn.transaction():
                await create_version(conn, projection, 9)
            tables = projection.tables_at(9)
            for event in events:
                async with conn.transaction():
                    assert (await apply_in_savepoint(conn, projection, 9, tables, event)).error is None
        assert await snapshot(env.pool, projection, 1) == await snapshot(env.pool, projection, 9)
        assert await recorded(env, projection.name, 1) == await recorded(env, projection.name, 9)
        row = await env.pool.fetchrow(
            """SELECT position, applied, build_head FROM memsaga.projection_versions
               WHERE name = $1 AND version = 1""",
            projection.name,
        )
        assert row is not None and tuple(row) == (head, result.applied, head)
    assert await counter_state(env) == (head, head, head)


async def test_an_interrupted_rebuild_resumes_from_its_last_committed_batch(env: Env) -> None:
    await append_all(env.store, make_history(seed=67, sagas=8))
    head = await env.store.head_position()
    failing_at = 7 * 3 + 2  # in the fourth batch, while the fifth is being read ahead
    assert head > failing_at + 14

    async def down_once(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
        if event.position == failing_at:
            raise OSError("database went away")
        await count(conn, tables, event)

    flaky = dataclasses.replace(COUNTER, handlers=dict.fromkeys(COUNTER.handlers, down_once))
    with pytest.raises(OSError, match="went away"):
        await rebuild(env.pool, env.store, flaky, batch_size=7)
    checkpoint = await env.pool.fetchval(
        "SELECT position FROM memsaga.projection_versions WHERE name = 'counter' AND version = 1"
    )
    assert checkpoint == 21 and await counter_state(env) == (21, 21, 21)

    result = await rebuild(env.pool, env.store, COUNTER, batch_size=7)  # same code version: resumed
    assert (result.version, result.position, result.applied) == (1, head, head)
    assert await counter_state(env) == (head, head, head)


async def publish_copies(env: Env, events: list[RecordedEvent], copies: int) -> None:
    """Publish like the relay does, with a message id per copy so that JetStream keeps each copy."""
    for copy in range(copies):
        for event in events:
            headers = event_headers(event)
            headers[MSG_ID] = f"{event.event_id}#{copy}"
            await env.js.publish(
                event_subject(event, env.prefix), event_body(event), stream=env.stream, headers=headers
            )


async def test_a_runner_applies_duplicates_within_one_fetch_once(env: Env) -> None:
    await ensure_built(env.pool, env.store, COUNTER)  # built empty: every event comes through NATS
    await append_all(env.store, make_history(seed=66, sagas=4))
    events = await all_events(env)
    total = len(events)
    runner: ProjectionRunner = env.runner(COUNTER, batch_size=4 * total)
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    await publish_copies(env, events, copies=2)  # all there before the first fetch

    async with background() as bg:
        bg.start(runner.run)

        async def done() -> bool:
            return runner.stats.applied + runner.stats.duplicates == 2 * total and await consumer_drained(
                env.js, env.stream, COUNTER
            )

        await wait_until(done, what="both copies handled", bg=bg)
    assert await counter_state(env) == (total, total, total)
    assert (runner.stats.applied, runner.stats.duplicates, runner.stats.parked) == (total, total, 0)
    assert runner.stats.batches == 1  # the copies came in one fetch
    position = await env.pool.fetchval(
        "SELECT position FROM memsaga.projection_versions WHERE name = $1 AND version = 1", COUNTER.name
    )
    assert position == max(e.position for e in events)


async def test_a_runner_parks_a_poison_event_mid_batch_after_max_deliver_while_the_others_apply(
    env: Env,
) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    for history in (
        make_history(seed=68, sagas=3),
        make_history(seed=69, sagas=3, poison_text=f"{POISON_PREFIX} runner"),
        make_history(seed=70, sagas=3),
    ):
        await append_all(env.store, history)
    events = await all_events(env)
    created = [e for e in events if e.event_type == CREATED]
    [poison] = [e for e in created if e.payload["text"].startswith(POISON_PREFIX)]
    assert created[0] is not poison and created[-1] is not poison
    runner = env.runner(CHOOSY, batch_size=len(events), max_deliver=2, retry_delay=0.05)
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    await publish_copies(env, events, copies=1)

    async with background() as bg:
        bg.start(runner.run)

        async def done() -> bool:
            return runner.stats.parked == 1 and await consumer_drained(env.js, env.stream, CHOOSY)

        await wait_until(done, what="the poison event parked", bg=bg)
    [parked] = await list_parked(env.pool)
    assert (parked.event_id, parked.deliveries, parked.position) == (poison.event_id, 2, poison.position)
    assert (runner.stats.applied, runner.stats.failures, runner.stats.duplicates) == (len(created) - 1, 1, 0)
    good = {(e.event_id, e.position) for e in created if e is not poison}
    assert await recorded(env, CHOOSY.name) == good
    assert len((await snapshot(env.pool, CHOOSY))["choosy"]) == len(created) - 1
    position = await env.pool.fetchval(
        "SELECT position FROM memsaga.projection_versions WHERE name = $1 AND version = 1", CHOOSY.name
    )
    assert position == created[-1].position


async def memories_rows(env: Env, version: int) -> list[tuple[Any, ...]]:
    rows = await env.pool.fetch(f"SELECT * FROM {MEMORIES.tables_at(version)['memories']} ORDER BY memory_id")
    return [tuple(r) for r in rows]


async def test_batch_handlers_leave_what_event_by_event_handlers_leave(env: Env) -> None:
    """MEMORIES applies runs of one type with executemany; the rows must be the per-event ones,
    also for disorder (a retraction before its creation) and a memory touched twice in a run."""
    await append_all(env.store, make_history(seed=71, sagas=40))
    events = [e for e in await all_events(env) if e.event_type in MEMORIES.handlers]
    retracted = [e for e in events if e.event_type != CREATED]
    assert retracted and len(events) > 20
    # Disorder: every retraction first, then the creations newest first, then the retractions again
    # (duplicates by id are skipped; the second sight of a memory in one run must still be right).
    mixed = retracted + list(reversed([e for e in events if e.event_type == CREATED])) + retracted
    unbatched = dataclasses.replace(MEMORIES, batch_handlers={})
    async with env.pool.acquire() as conn, conn.transaction():
        await create_version(conn, MEMORIES, 1)
        await create_version(conn, MEMORIES, 2)

    for version, projection in ((1, MEMORIES), (2, unbatched)):
        _, sent = await apply_logged(env, projection, mixed, version=version)
        handler_statements = [q for q in sent if "memsaga_read" in q]
        if projection is MEMORIES:  # one executemany per run of one type, not one per event
            assert len(handler_statements) < len(mixed) / 4
    assert await memories_rows(env, 1) == await memories_rows(env, 2)
    assert len(await memories_rows(env, 1)) > 0


async def test_a_failing_batch_handler_falls_back_to_one_savepoint_per_event(env: Env) -> None:
    await append_all(env.store, make_history(seed=72, sagas=8))
    events = [e for e in await all_events(env) if e.event_type == CREATED]
    poison = events[len(events) // 2]

    async def choke_on_one(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
        if event.event_id == poison.event_id:
            raise ValueError("poison")
        await MEMORIES.handlers[CREATED](conn, tables, event)

    async def batch(conn: Connection, tables: Tables, batch_events: Any) -> None:
        for event in batch_events:
            await choke_on_one(conn, tables, event)

    choking = dataclasses.replace(MEMORIES, handlers={CREATED: choke_on_one}, batch_handlers={CREATED: batch})
    async with env.pool.acquire() as conn, conn.transaction():
        await create_version(conn, choking, 1)
    results, _ = await apply_logged(env, choking, events)
    assert [r.error is not None for r in results] == [e is poison for e in events]
    assert [r.applied for r in results] == [e is not poison for e in events]
    assert len(await memories_rows(env, 1)) == len(events) - 1


def test_a_batch_handler_needs_a_handler_of_its_type() -> None:
    with pytest.raises(ValueError, match="batch handlers need a handler"):
        dataclasses.replace(MEMORIES, handlers={CREATED: MEMORIES.handlers[CREATED]})


async def test_a_backlog_comes_in_full_batches(env: Env) -> None:
    """Catching up, each fetch returns ``batch_size`` messages (the last one the rest), not what
    one ``no_wait`` pull happens to find: the batch count is the backlog over the batch size."""
    await ensure_built(env.pool, env.store, COUNTER)  # built empty: every event comes through NATS
    await append_all(env.store, make_history(seed=19, sagas=6))
    events = await all_events(env)
    total, size = len(events), 7
    runner: ProjectionRunner = env.runner(COUNTER, batch_size=size)
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    await publish_copies(env, events, copies=1)  # the whole backlog there before the first fetch

    async with background() as bg:
        bg.start(runner.run)

        async def done() -> bool:
            return runner.stats.applied == total and await consumer_drained(env.js, env.stream, COUNTER)

        await wait_until(done, what="the backlog applied", bg=bg)
    assert total > 3 * size
    assert runner.stats.batches == -(-total // size)


async def test_without_a_savepoint_a_batch_saves_two_statements_and_a_failure_says_redo(env: Env) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    await append_all(env.store, make_history(seed=63, sagas=6, poison_text=f"{POISON_PREFIX} late"))
    events = await all_events(env)
    [poison] = [e for e in events if e.payload.get("text", "").startswith(POISON_PREFIX)]
    others = [e for e in events if e is not poison]
    created = [e for e in others if e.event_type == CREATED]

    results, sent = await apply_logged(env, CHOOSY, others, savepoint=False)
    assert results == [Applied(e.event_type == CREATED) for e in others]
    assert not any("SAVEPOINT" in q for q in sent)
    assert "memsaga.projection_applied" in sent[0] and len(sent) == 1 + len(created)

    with pytest.raises(BatchFailed):
        await apply_logged(env, CHOOSY, events, savepoint=False)
    # The caller's transaction rolled back: only the first batch's events are recorded.
    assert await recorded(env, CHOOSY.name) == {(e.event_id, e.position) for e in created}
