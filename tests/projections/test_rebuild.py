"""Rebuild without downtime: from the store, while readers read and events keep arriving."""

from __future__ import annotations

import asyncio
from functools import partial

from projections import MEMORIES, RebuildProgress, list_memories, rebuild
from tests.projections.conftest import Env, applied, background, built, consumer_drained, snapshot, wait_until
from tests.projections.counter import COUNTER
from tests.projections.histories import History, append_all, make_history

USERS = ("user-0", "user-1", "user-2")


async def test_rebuild_switches_atomically_while_serving_reads_and_live_events(env: Env) -> None:
    before, during = make_history(seed=51, sagas=30), make_history(seed=52, sagas=15)
    memory_events = before.count(MEMORIES.event_types) + during.count(MEMORIES.event_types)
    all_events = len(before.events) + len(during.events)
    expected_before = before.memories()
    progress: list[RebuildProgress] = []
    reads_during_rebuild = 0
    rebuilding = asyncio.Event()

    async def reader(stop: asyncio.Event) -> None:
        nonlocal reads_during_rebuild
        while not stop.is_set():
            for user in USERS:
                seen = {(m.memory_id, m.text) for m in await list_memories(env.pool, user)}
                missing = expected_before.get(user, set()) - seen
                assert not missing, f"a reader saw {user}'s memories without {sorted(missing)[:3]}"
                reads_during_rebuild += rebuilding.is_set()
            await asyncio.sleep(0)

    async with background() as bg:
        bg.start(env.relay().run)
        bg.start(env.runner(MEMORIES).run)
        bg.start(env.runner(COUNTER).run)
        for projection in (MEMORIES, COUNTER):
            await wait_until(
                partial(built, env.pool, projection.name), what=f"{projection.name} built", bg=bg
            )
        await append_all(env.store, before)
        await wait_until(
            lambda: _caught_up(env, before.count(MEMORIES.event_types), len(before.events)), bg=bg
        )

        bg.start(reader)
        switched = asyncio.Event()
        appender = asyncio.ensure_future(_append_around_the_switch(env, during, switched))
        rebuilding.set()
        memories, counter = await asyncio.gather(
            rebuild(env.pool, env.store, MEMORIES, batch_size=25, progress=progress.append),
            rebuild(env.pool, env.store, COUNTER, batch_size=25),
        )
        rebuilding.clear()
        switched.set()
        await appender
        await wait_until(
            lambda: _caught_up(env, memory_events, all_events), what="live after the switch", bg=bg
        )

    assert (memories.version, memories.previous_version, counter.version) == (2, 1, 2)
    assert max(memories.position, counter.position) < all_events  # the live runners took over from the builds
    assert reads_during_rebuild > 0
    expected = during.memories()
    for user, mems in before.memories().items():
        expected.setdefault(user, set()).update(mems)
    for user in USERS:
        assert {(m.memory_id, m.text) for m in await list_memories(env.pool, user)} == expected.get(
            user, set()
        )
    # Every event reached the new counter exactly once, across the handover.
    n = await env.pool.fetchval(f"SELECT n FROM {COUNTER.views()['counter']}")
    seen = await env.pool.fetchrow(
        f"SELECT count(*), count(DISTINCT event_id) FROM {COUNTER.views()['counter_seen']}"
    )
    assert seen is not None and (n, seen[0], seen[1]) == (all_events, all_events, all_events)
    positions = [p.position for p in progress]
    assert positions == sorted(positions) and positions[-1] >= progress[0].head and progress[-1].version == 2
    rows = await env.pool.fetch(
        "SELECT version, state FROM memsaga.projection_versions WHERE name = 'memories'"
    )
    states = {r["version"]: r["state"] for r in rows}
    assert states == {1: "retired", 2: "active"}
    assert await env.pool.fetchval("SELECT to_regclass('memsaga_read.memories_v1') IS NOT NULL")  # kept

    # With nothing arriving, a rebuild ends equal to the live model, row for row.
    live = await snapshot(env.pool, MEMORIES)
    third = await rebuild(env.pool, env.store, MEMORIES)
    assert third.version == 3 and await snapshot(env.pool, MEMORIES, 3) == live == await snapshot(
        env.pool, MEMORIES
    )


async def _append_around_the_switch(env: Env, history: History, switched: asyncio.Event) -> None:
    """Half of ``history`` while the rebuilds run, the rest once they have switched."""
    half = len(history.appends) // 2
    for append in history.appends[:half]:
        await env.store.append(append.stream_id, append.events)
        await asyncio.sleep(0.005)
    await switched.wait()
    for append in history.appends[half:]:
        await env.store.append(append.stream_id, append.events)


async def _caught_up(env: Env, memory_events: int, all_events: int) -> bool:
    return (
        await applied(env.pool, MEMORIES.name) == memory_events
        and await applied(env.pool, COUNTER.name) == all_events
        and await consumer_drained(env.js, env.stream, MEMORIES)
        and await consumer_drained(env.js, env.stream, COUNTER)
    )
