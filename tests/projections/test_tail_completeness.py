"""Every committed event reaches every follower of the log, under concurrent, slow and rolled-back batches.

Four writers append batches of 1 to 1,000 events, each in a transaction that sleeps a random
while before it commits, and about one in five rolls back. Meanwhile a tail, the relay
(JetStream) and a projection follow the store; the projection's first build runs from the
store while the writers write. Each must end with exactly the committed events.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from datetime import UTC, datetime

from eventstore import NewEvent
from sagas.memory_extraction import events as ev
from tests.projections.conftest import Env, applied, background, wait_until
from tests.projections.counter import COUNTER

WRITERS = 4
OCCURRED_AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class _Rollback(Exception):
    pass


def _memories(count: int, writer: int) -> list[NewEvent]:
    return [
        NewEvent.of(
            ev.MemoryCreated(
                memory_id=f"m-{uuid.uuid4().hex}",
                user_id=f"u-{writer}",
                episode_id="ep-tail",
                text=f"fact {k}",
                kind="fact",
                content_hash="0" * 64,
                vector_sha256=None,
                dimension=None,
                embedder=None,
                source="test",
            ),
            correlation_id=f"corr-tail-{writer}",
            causation_id="cmd-tail",
            occurred_at=OCCURRED_AT,
            user_id=f"u-{writer}",
        )
        for k in range(count)
    ]


def _batch_sizes(rng: random.Random) -> list[int]:
    """1 and 1,000 always, and six sizes spread log-uniformly between them."""
    sizes = [1, 1000, 1000, 1000, *(round(math.exp(rng.uniform(0, math.log(1000)))) for _ in range(6))]
    rng.shuffle(sizes)
    return sizes


async def test_tail_relay_and_projection_each_see_every_committed_event(env: Env) -> None:
    rng = random.Random(20261202)
    committed: set[uuid.UUID] = set()
    committed_sizes: list[int] = []
    rolled_back = 0
    first_commit = asyncio.Event()

    rounds = [_batch_sizes(rng) for _ in range(WRITERS)]
    barrier = asyncio.Barrier(WRITERS)

    async def writer(worker: int) -> None:
        nonlocal rolled_back
        for size in rounds[worker]:
            await barrier.wait()  # the writers' transactions take their ids together, as in the repro
            batch = _memories(size, worker)
            stream_id = f"memory-{uuid.uuid4().hex}"
            if rng.random() < 0.4:  # a plain append: its own transaction, nothing else in it
                await env.store.append(stream_id, batch)
            else:
                delay, doomed = rng.choice([0.0, rng.random() * 0.05]), rng.random() < 1 / 3
                async with env.pool.acquire() as conn:
                    try:
                        async with conn.transaction():
                            await env.store.append(stream_id, batch, conn=conn)
                            await asyncio.sleep(delay)  # positions in flight while others commit
                            if doomed:
                                raise _Rollback
                    except _Rollback:
                        rolled_back += 1
                        continue
            committed.update(e.event_id for e in batch)
            committed_sizes.append(size)
            first_commit.set()

    tailed: list[uuid.UUID] = []
    tail_positions: list[int] = []
    tail = env.store.tail()

    async def follow(stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await tail.poll(500)
            tailed.extend(e.event_id for e in batch)
            tail_positions.extend(e.position for e in batch)
            if not batch:
                await asyncio.sleep(0.005)

    async def project_later(stop: asyncio.Event) -> None:
        # Its first build then follows the store while the writers write.
        started = asyncio.create_task(first_commit.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        stopped.cancel()
        if not stop.is_set():
            await env.runner(COUNTER, batch_size=200).run(stop)

    async with background() as bg:
        bg.start(follow)
        bg.start(env.relay(batch_size=256).run)
        bg.start(project_later)
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        total = len(committed)

        async def messages() -> bool:
            return (await env.js.stream_info(env.stream)).state.messages >= total

        async def tailed_all() -> bool:
            return len(tailed) >= total

        await wait_until(tailed_all, timeout=60, what="the tail", bg=bg)
        await wait_until(messages, timeout=60, what="JetStream", bg=bg)
        await wait_until(lambda: _at_least(env, total), timeout=120, what="the projection", bg=bg)
        await asyncio.sleep(0.5)  # room for anything extra to show up

    assert rolled_back, "the scenario must include rollbacks"
    assert 1 in committed_sizes and 1000 in committed_sizes
    assert len(tailed) == len(set(tailed)) == total and set(tailed) == committed
    assert tail_positions == sorted(tail_positions)
    assert (await env.js.stream_info(env.stream)).state.messages == total
    views = COUNTER.views()
    seen = {r[0] for r in await env.pool.fetch(f"SELECT event_id FROM {views['counter_seen']}")}
    assert seen == committed
    assert await env.pool.fetchval(f"SELECT n FROM {views['counter']}") == total
    assert await applied(env.pool, COUNTER.name) == total


async def _at_least(env: Env, total: int) -> bool:
    return await applied(env.pool, COUNTER.name) >= total
