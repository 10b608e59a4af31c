"""The owners of the projections' bookkeeping tables, end to end on one built read model:
``projections.versions`` (registry, checkpoints), ``projections.tracking`` (applied events)
and ``projections.parked`` (poison events)."""

from __future__ import annotations

import uuid

from eventstore import RecordedEvent
from projections import ensure_built
from projections.parked import count_parked, mark_dropped, park, parked_rows
from projections.tracking import projections_that_applied
from projections.versions import ActiveCheckpoint, Checkpoint, active_checkpoint, building_version, checkpoint
from tests.projections.conftest import Env
from tests.projections.counter import COUNTER
from tests.projections.histories import append_all, make_history


async def all_events(env: Env) -> list[RecordedEvent]:
    return [e async for batch in env.store.read_all() for e in batch]


async def test_a_built_version_reports_its_checkpoint_and_what_it_applied(env: Env) -> None:
    await append_all(env.store, make_history(seed=71, sagas=3))
    active = await ensure_built(env.pool, env.store, COUNTER)
    events = await all_events(env)

    done = await checkpoint(env.pool, COUNTER.name, active.version)
    assert done == Checkpoint(events[-1].position, len(events))
    assert await active_checkpoint(env.pool, COUNTER.name) == ActiveCheckpoint(
        active.version, COUNTER.version, done.position, done.applied
    )
    assert await active_checkpoint(env.pool, "never-built") is None
    assert await building_version(env.pool, COUNTER.name) is None
    unknown = uuid.uuid4()
    applied = await projections_that_applied(env.pool, [events[0].event_id, unknown])
    assert COUNTER.name in applied[events[0].event_id] and unknown not in applied


async def test_a_parked_event_is_counted_until_it_is_dropped(env: Env) -> None:
    await append_all(env.store, make_history(seed=72, sagas=1))
    active = await ensure_built(env.pool, env.store, COUNTER)
    event = (await all_events(env))[0]
    async with env.pool.acquire() as conn:
        await park(conn, COUNTER.name, active.version, event.event_id, event, "ValueError: boom", 3)

    assert await count_parked(env.pool, COUNTER.name) == 1
    assert await count_parked(env.pool, COUNTER.name, active.version + 1) == 0
    [row] = await parked_rows(env.pool, event.event_id)
    assert (row.projection, row.status, row.deliveries, row.error_line) == (
        COUNTER.name,
        "parked",
        3,
        "ValueError: boom",
    )
    dropped = await mark_dropped(env.pool, COUNTER.name, event.event_id, "a test")
    assert dropped is not None and (dropped.status, dropped.drop_reason) == ("dropped", "a test")
    assert await mark_dropped(env.pool, COUNTER.name, event.event_id, "again") is None
    assert await count_parked(env.pool, COUNTER.name) == 0
