"""The global order under concurrent, slow and rolled-back appenders (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg

from eventstore import EVENTSTORE_MIGRATIONS, NO_STREAM, EventIdConflict, PostgresEventStore
from memsaga.devstack.databases import DatabaseFactory
from tests.eventstore.conftest import noted, stream
from tests.eventstore.schemas import make_registry
from tests.support import migrated_database


class _Rollback(Exception):
    pass


async def test_naive_reader_skips_an_in_flight_position_and_the_tail_does_not(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    start = await store.head_position()
    tail = store.tail(after_position=start)
    slow_event, fast_event = noted("slow"), noted("fast")
    async with pg_pool.acquire() as slow:
        tx = slow.transaction()
        await tx.start()
        await store.append(stream(), [slow_event], conn=slow)  # takes the lower position, not committed
        await store.append(stream(), [fast_event])  # higher position, committed at once

        naive = await pg_pool.fetch(
            "SELECT position, event_id FROM memsaga.events WHERE position > $1 ORDER BY position", start
        )
        assert [r["event_id"] for r in naive] == [fast_event.event_id]
        naive_checkpoint = naive[-1]["position"]
        assert await tail.poll() == []  # the tail waits for the lower position instead
        await tx.commit()

    late = await pg_pool.fetch("SELECT event_id FROM memsaga.events WHERE position > $1", naive_checkpoint)
    assert slow_event.event_id not in {r["event_id"] for r in late}  # the naive reader lost it for good
    seen = await tail.poll()
    assert [e.event_id for e in seen] == [slow_event.event_id, fast_event.event_id]


async def test_tail_passes_a_rolled_back_gap_once_it_is_final(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    tail = store.tail(after_position=await store.head_position())
    kept = noted("kept")
    async with pg_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append(stream(), [noted("doomed")], conn=conn)
        await store.append(stream(), [kept])
        assert await tail.poll() == []
        assert tail.waiting_on_gap
        await tx.rollback()
    assert [e.event_id for e in await tail.poll()] == [kept.event_id]


async def test_concurrent_slow_and_rolled_back_appends_are_seen_exactly_once_in_order(
    pg_pool: asyncpg.Pool,
) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    tail = store.tail(after_position=await store.head_position())
    rng = random.Random(20261123)
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    writers_done = asyncio.Event()

    async def writer(worker: int) -> None:
        for i in range(25):
            batch = [noted(f"{worker}-{i}-{k}") for k in range(rng.randint(1, 3))]
            delay, doomed = rng.random() * 0.02, rng.random() < 0.2
            async with pg_pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await store.append(stream(), batch, conn=conn)
                        await asyncio.sleep(delay)  # hold positions in flight while others commit
                        if doomed:
                            raise _Rollback
                except _Rollback:
                    rolled_back.update(e.event_id for e in batch)
                    continue
            committed.update(e.event_id for e in batch)

    async def reader() -> list[tuple[int, uuid.UUID]]:
        seen: list[tuple[int, uuid.UUID]] = []
        while True:
            finished = writers_done.is_set()
            batch = await tail.poll(limit=50)
            seen.extend((e.position, e.event_id) for e in batch)
            if finished and not batch:
                return seen
            if not batch:
                await asyncio.sleep(0.002)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(8)))
    writers_done.set()
    seen = await asyncio.wait_for(reading, timeout=60)

    ids = [event_id for _, event_id in seen]
    positions = [position for position, _ in seen]
    assert rolled_back, "the scenario must include rollbacks"
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == committed, "the tail missed committed events or saw rolled-back ones"
    assert positions == sorted(positions), "events were delivered out of position order"
    assert not tail.waiting_on_gap


async def test_a_running_transaction_missing_from_the_snapshot_holds_the_tail(pg_pool: asyncpg.Pool) -> None:
    """Part 1 of shared/repro/tail_gap.py: P holds a position while Q, with a lower id, commits a higher one.

    P's id is above every completed one, so the snapshot's in-progress list is empty while P
    runs; the first rule took that for "nothing runs", passed P's position and lost it.
    """
    store = PostgresEventStore(pg_pool, make_registry())
    start = await store.head_position()
    tail = store.tail(after_position=start)
    hot, other = stream(), stream()
    async with pg_pool.acquire() as h, pg_pool.acquire() as p:
        th, tp = h.transaction(), p.transaction()
        await th.start()
        await store.append(hot, [noted("h")], conn=h)  # H holds the hot stream's lock
        q = asyncio.create_task(store.append(hot, [noted("q")]))  # Q takes its id, waits on the lock
        await asyncio.sleep(0.2)
        await tp.start()
        await store.append(other, [noted("p")], conn=p)  # P: a later id, a lower position, in flight
        p_xid = int(await p.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        await th.commit()  # H commits; Q takes the next position and commits
        q_position = (await q).positions[0]
        snapshot = await pg_pool.fetchrow(
            "SELECT pg_snapshot_xmax(s)::text::bigint AS xmax,"
            " array(SELECT pg_snapshot_xip(s))::text[] AS xip FROM pg_current_snapshot() s"
        )
        assert snapshot["xmax"] <= p_xid and str(p_xid) not in snapshot["xip"]  # the unlisted runner
        first = [e.payload["text"] for e in await tail.poll()]
        assert first == ["h"]  # stops before P's position, though nothing is listed as running
        assert tail.waiting_on_gap and tail.position < q_position
        assert await tail.poll() == []
        await tp.commit()
    assert [e.payload["text"] for e in await tail.poll()] == ["p", "q"]
    assert tail.position == q_position and not tail.waiting_on_gap


async def test_concurrent_batches_to_new_streams_are_all_delivered(pg_pool: asyncpg.Pool) -> None:
    """Part 2 of shared/repro/tail_gap.py: plain appends only, two 1,000-event batches at a time."""
    store = PostgresEventStore(pg_pool, make_registry())
    start = await store.head_position()
    tail = store.tail(after_position=start)
    seen: list[int] = []
    stop = asyncio.Event()

    async def follow() -> None:
        while not stop.is_set():
            seen.extend(e.position for e in await tail.poll(1000))

    reader = asyncio.create_task(follow())
    committed: list[int] = []
    for _ in range(20):
        results = await asyncio.gather(
            *(store.append(stream(), [noted(str(i)) for i in range(1000)], expected_version=NO_STREAM)
              for _ in range(2))
        )  # fmt: skip
        committed.extend(p for r in results for p in r.positions)
    stop.set()
    await reader
    for _ in range(3):  # whatever the reader held back at the end is final by now
        seen.extend(e.position for e in await tail.poll(100_000))
    assert len(committed) == 40_000
    assert seen == sorted(committed), "the tail lost, repeated or reordered committed events"


async def test_append_joins_the_callers_transaction(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    sid = stream()
    await store.append(sid, [noted("first")])
    async with pg_pool.acquire() as conn:
        try:
            async with conn.transaction():
                await store.append(sid, [noted("inside")], conn=conn)
                await conn.execute("CREATE TEMP TABLE other_write (x int)")
                raise _Rollback
        except _Rollback:
            pass
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["first"]


async def test_appenders_to_one_stream_queue_inside_transactions(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    sid = stream()
    async with pg_pool.acquire() as first, pg_pool.acquire() as second:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        await store.append(sid, [noted("winner")], conn=first)
        queued = asyncio.create_task(store.append(sid, [noted("queued")], conn=second))
        await asyncio.sleep(0.1)
        assert not queued.done()  # waits on the stream lock held by the first transaction
        await tx1.commit()
        assert (await queued).last_version == 2
        await tx2.commit()
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["winner", "queued"]


async def test_a_lost_race_inside_a_transaction_leaves_it_usable(pg_pool: asyncpg.Pool) -> None:
    """One event id sent to two streams at once: the stream locks differ, the unique index decides."""
    store = PostgresEventStore(pg_pool, make_registry())
    event = noted("contested")
    async with pg_pool.acquire() as first, pg_pool.acquire() as second:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        await store.append(stream(), [event], conn=first)
        racing = asyncio.create_task(store.append(stream(), [event], conn=second))
        await asyncio.sleep(0.1)  # the second insert now waits on the first's unique-index entry
        await tx1.commit()
        try:
            await racing
        except EventIdConflict as exc:
            assert exc.field == "stream_id"
        else:
            raise AssertionError("one event id landed in two streams")
        assert await second.fetchval("SELECT 1") == 1  # the caller's transaction is still usable
        await tx2.commit()


async def test_events_cannot_be_updated_deleted_or_truncated(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool, make_registry())
    sid = stream()
    await store.append(sid, [noted("fact")])
    for sql in (
        "UPDATE memsaga.events SET payload = '{}' WHERE stream_id = $1",
        "DELETE FROM memsaga.events WHERE stream_id = $1",
    ):
        try:
            await pg_pool.execute(sql, sid)
        except asyncpg.RestrictViolationError as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"{sql} was allowed")
    try:
        await pg_pool.execute("TRUNCATE memsaga.events")
    except asyncpg.RestrictViolationError:
        pass
    else:
        raise AssertionError("TRUNCATE was allowed")
    assert [e.payload["text"] for e in await store.read_stream(sid)] == ["fact"]


async def test_appends_never_scan_the_whole_log_even_with_plans_from_an_empty_table(
    fresh_database: DatabaseFactory,
) -> None:
    dsn = await migrated_database(fresh_database, [EVENTSTORE_MIGRATIONS])
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)  # one connection: one plan cache
    other = await asyncpg.connect(dsn)
    try:
        store = PostgresEventStore(pool, make_registry())
        for _ in range(8):  # plans are made and cached while the table is nearly empty
            await store.append(stream(), [noted()])  # one event: memsaga.append_event
            await store.append(stream(), [noted(), noted()])  # a batch: memsaga.append_events
        await other.execute(  # the log grows behind the cached plans' back (no ANALYZE)
            """INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
                   correlation_id, causation_id, occurred_at, payload)
               SELECT gen_random_uuid(), 'bulk-' || g, 1, 'Noted', 1, 'c', 'c', now(), '{"text": "x"}'
               FROM generate_series(1, 5000) g"""
        )

        async def seq_scans() -> int:
            async with pool.acquire() as conn:  # flush this backend's pending statistics
                await conn.execute("SELECT pg_stat_force_next_flush()")
                await conn.execute("SELECT 1")
            await other.execute("SELECT pg_stat_clear_snapshot()")
            return int(await other.fetchval(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'memsaga.events'::regclass"
            ))  # fmt: skip

        before = await seq_scans()
        for _ in range(20):
            await store.append(stream(), [noted()])
            await store.append(stream(), [noted(), noted()])
        assert await seq_scans() == before
    finally:
        await other.close()
        await pool.close()
