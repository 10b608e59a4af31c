"""At-least-once and out-of-order delivery leave the read models exactly as in-order delivery does."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest_asyncio
from nats.js import JetStreamContext

from eventstore import RecordedEvent
from memsaga.devstack import DatabaseFactory
from projections import EXTRACTIONS, MEMORIES, Projection, get_extraction, list_memories
from projections.subjects import MSG_ID, event_body, event_headers, event_subject
from tests.projections.conftest import (
    Background,
    Env,
    applied,
    background,
    built,
    consumer_drained,
    make_env,
    snapshot,
    wait_until,
)
from tests.projections.histories import History, append_all, make_history

HISTORY = make_history(seed=7, sagas=12)
PROJECTED = (MEMORIES, EXTRACTIONS)
Snapshots = dict[str, dict[str, list[tuple[Any, ...]]]]
Publisher = Callable[[Background], Awaitable[None]]


def expected_applied(projection: Projection, history: History) -> int:
    return history.count(projection.event_types)


async def all_events(env: Env) -> list[RecordedEvent]:
    return [e async for batch in env.store.read_all() for e in batch]


async def project(env: Env, publish: Publisher, *, runners_per_projection: int = 1) -> Snapshots:
    """Start the runners on an empty store, append HISTORY, let ``publish`` deliver it, wait, snapshot."""
    async with background() as bg:
        for projection in PROJECTED:
            for _ in range(runners_per_projection):
                bg.start(env.runner(projection, batch_size=20).run)
        for projection in PROJECTED:  # built (empty) before any event exists: everything comes via NATS
            await wait_until(
                partial(built, env.pool, projection.name), what=f"{projection.name} built", bg=bg
            )
        await append_all(env.store, HISTORY)
        await publish(bg)
        for projection in PROJECTED:
            want = expected_applied(projection, HISTORY)

            async def done(p: Projection = projection, want: int = want) -> bool:
                return await applied(env.pool, p.name) == want and await consumer_drained(
                    env.js, env.stream, p
                )

            await wait_until(done, what=f"{projection.name} caught up", bg=bg)
    return {p.name: await snapshot(env.pool, p) for p in PROJECTED}


async def _active(env: Env, projection: Projection) -> bool:
    return bool(
        await env.pool.fetchval("SELECT count(*) FROM memsaga.projections WHERE name = $1", projection.name)
    )


async def _via_relay(env: Env, bg: Background) -> None:
    bg.start(env.relay().run)


async def publish_raw(env: Env, events: list[RecordedEvent], copy: int) -> None:
    """Publish like the relay does, but with a message id per copy, so JetStream keeps every copy."""
    for event in events:
        headers = event_headers(event)
        headers[MSG_ID] = f"{event.event_id}#{copy}"
        await env.js.publish(
            event_subject(event, env.prefix), event_body(event), stream=env.stream, headers=headers
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reference(
    fresh_database: DatabaseFactory, js: JetStreamContext
) -> AsyncIterator[tuple[Env, Snapshots]]:
    """The read models after in-order, exactly-once delivery through the relay."""
    async for env in make_env(fresh_database, js):
        yield env, await project(env, partial(_via_relay, env))


async def test_in_order_delivery_builds_the_expected_read_models(reference: tuple[Env, Snapshots]) -> None:
    env, _ = reference
    expected = HISTORY.memories()
    assert expected  # the history does leave memories, and retracts others
    assert HISTORY.count(("MemoryRetracted",)) > 0
    for user in ("user-0", "user-1", "user-2"):
        memories = await list_memories(env.pool, user)
        assert {(m.memory_id, m.text) for m in memories} == expected.get(user, set())
        assert all(m.correlation_id.startswith("corr-7-") and m.version == 1 for m in memories)
    for correlation_id, status in HISTORY.statuses.items():
        extraction = await get_extraction(env.pool, correlation_id)
        assert extraction is not None and extraction.status == status
        saga_events = [e for e in HISTORY.events if e.correlation_id == correlation_id]
        assert [t.event_type for t in extraction.timeline] == [e.event_type for e in saga_events]
        assert extraction.events == len(saga_events)


async def test_every_message_delivered_twice_leaves_the_same_read_models(
    env: Env, reference: tuple[Env, Snapshots]
) -> None:
    async def twice(bg: Background) -> None:
        events = await all_events(env)
        await publish_raw(env, events, copy=1)
        await publish_raw(env, events, copy=2)
        info = await env.js.stream_info(env.stream)
        assert info.state.messages == 2 * len(events)

    # Two runners per projection share each durable consumer, as separate processes would.
    assert await project(env, twice, runners_per_projection=2) == reference[1]


async def test_shuffled_delivery_converges_to_the_same_read_models(
    env: Env, reference: tuple[Env, Snapshots]
) -> None:
    async def shuffled(bg: Background) -> None:
        events = await all_events(env)
        random.Random(11).shuffle(events)
        # Make sure the shuffle puts some retractions before their memory's creation.
        position = {
            e.payload.get("memory_id"): i for i, e in enumerate(events) if e.event_type == "MemoryCreated"
        }
        early = [
            e
            for i, e in enumerate(events)
            if e.event_type == "MemoryRetracted" and i < position[e.payload["memory_id"]]
        ]
        assert early, "the shuffle should deliver a retraction before its creation"
        await publish_raw(env, events, copy=1)

    assert await project(env, shuffled) == reference[1]
