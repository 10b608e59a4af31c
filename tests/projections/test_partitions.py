"""Partitioned projections on real NATS and PostgreSQL: runners share partitions by lease, take
over from a killed one, apply each user's events in order, and a batch commits only under its lease."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import projections.runner
from eventstore import RecordedEvent
from projections import ensure_current, ensure_stream, rebuild
from projections.consistency import has_applied
from projections.errors import LeaseLost
from projections.partition_leases import PartitionLeases, live_leases
from projections.partitioning import partition_of
from projections.runner import ProjectionRunner
from projections.status import projection_status
from projections.subjects import MSG_ID, event_body, event_headers, event_subject
from projections.versions import (
    active_checkpoint,
    active_partition_positions,
    active_version,
    current_versions,
)
from tests.projections.conftest import Env, background, relay_position, snapshot, wait_until
from tests.projections.counter import COUNTER, DELAY_ENV
from tests.projections.histories import History, append_all, make_history
from tests.projections.partition_runner import ORDERED

REPO = Path(__file__).resolve().parents[2]
FAST = {"lease_interval": 0.3, "lease_ttl": 1.5, "batch_size": 10}


async def publish_all(env: Env) -> int:
    head = await env.store.head_position()
    await env.relay().run(to_position=head)
    assert await relay_position(env.pool, env.stream) == head
    return head


async def holders(env: Env, name: str, partitions: int) -> dict[int, uuid.UUID]:
    return {lease.partition: lease.owner for lease in await live_leases(env.pool, name, partitions)}


async def shares(env: Env, name: str, partitions: int) -> list[int]:
    """How many partitions each runner holding some holds, fewest first."""
    held = list((await holders(env, name, partitions)).values())
    return sorted(held.count(owner) for owner in set(held))


async def total_applied(env: Env, name: str) -> int:
    active = await active_checkpoint(env.pool, name)
    return 0 if active is None else active.applied


async def counter_state(env: Env) -> tuple[int, int, int]:
    """(n, rows in counter_seen, distinct event ids in it)."""
    views = COUNTER.views()
    n = await env.pool.fetchval(f"SELECT n FROM {views['counter']}")
    row = await env.pool.fetchrow(f"SELECT count(*), count(DISTINCT event_id) FROM {views['counter_seen']}")
    assert row is not None
    return int(n), int(row[0]), int(row[1])


async def drained(env: Env, runner: ProjectionRunner, partitions: int) -> bool:
    for partition in range(partitions):
        durable = runner.projection.partition_durable(partition, partitions)
        info = await env.js.consumer_info(env.stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


def many_users() -> History:
    return make_history(seed=91, sagas=24, users=12)


async def test_two_runners_split_the_partitions_and_apply_each_users_events_in_order(env: Env) -> None:
    history = many_users()
    a, b = (env.runner(ORDERED, partitions=4, **FAST) for _ in range(2))
    async with background() as bg:
        bg.start(a.run)

        async def a_holds_all() -> bool:
            return await holders(env, "ordered", 4) == dict.fromkeys(range(4), a.runner_id)

        await wait_until(a_holds_all, what="one runner holding every partition", bg=bg)
        bg.start(b.run)

        async def split() -> bool:
            return await shares(env, "ordered", 4) == [2, 2]

        await wait_until(split, what="two runners holding two partitions each", bg=bg)
        await append_all(env.store, history)
        await publish_all(env)
        total = len(history.events)

        async def done() -> bool:
            return await total_applied(env, "ordered") == total and await drained(env, a, 4)

        await wait_until(done, what="every event applied", bg=bg)
    assert a.stats.applied > 0 and b.stats.applied > 0 and a.stats.applied + b.stats.applied == total
    rows = await env.pool.fetch(f"SELECT user_id, position FROM {ORDERED.views()['ordered']} ORDER BY seq")
    by_user: dict[str, list[int]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row["position"])
    assert len(by_user) == 12 and all(positions == sorted(positions) for positions in by_user.values())
    [active] = await current_versions(env.pool, "ordered")
    assert (active.partitions, active.applied) == (4, total)
    assert await holders(env, "ordered", 4) == {}  # both stopped cleanly: every lease released


def spawn(env: Env, nats_url: str, name: str, partitions: int) -> subprocess.Popen[bytes]:
    args = [env.dsn, nats_url, env.stream, env.prefix, name, str(partitions)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.projections.partition_runner", *args],
        cwd=REPO,
        env={**os.environ, DELAY_ENV: "0.02"},  # 10 events x 20 ms: 0.2 s per batch
    )


async def test_a_runner_killed_with_sigkill_has_its_partitions_taken_over_within_10s(
    env: Env, nats_url: str
) -> None:
    await ensure_current(env.pool, env.store, COUNTER, partitions=4)  # built empty: all comes via NATS
    history = many_users()
    await append_all(env.store, history)
    total = await publish_all(env)
    children = [spawn(env, nats_url, "counter", 4) for _ in range(2)]
    try:

        async def split_and_busy() -> bool:
            assert all(c.poll() is None for c in children), "a runner process died"
            return await shares(env, "counter", 4) == [2, 2] and (await counter_state(env))[0] >= 20

        await wait_until(split_and_busy, timeout=60, what="two runner processes sharing the work")
        owner = next(iter((await holders(env, "counter", 4)).values()))
        pid = await env.pool.fetchval(
            "SELECT pid FROM memsaga.projection_runners WHERE runner_id = $1", owner
        )
        [victim] = [c for c in children if c.pid == pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed = time.monotonic()

        async def survivor_holds_all() -> bool:
            held = await holders(env, "counter", 4)
            return len(held) == 4 and owner not in held.values()

        await wait_until(survivor_holds_all, timeout=15, what="the survivor holding every partition")
        assert time.monotonic() - killed < 10

        async def done() -> bool:
            return (await counter_state(env))[0] == total

        await wait_until(done, timeout=60, what="the survivor caught up")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
    assert await counter_state(env) == (total, total, total)  # nothing lost, nothing doubled
    async with env.pool.acquire() as conn:
        live = await active_version(conn, "counter")
    assert live is not None
    built = await rebuild(env.pool, env.store, COUNTER)  # a single-runner build of the same history
    assert await snapshot(env.pool, COUNTER, live.version) == await snapshot(env.pool, COUNTER, built.version)


async def test_the_fence_refuses_a_batch_of_a_runner_that_does_not_hold_the_partition(env: Env) -> None:
    runner = env.runner(COUNTER, partitions=2, **FAST)
    await runner.prepare()
    await append_all(env.store, make_history(seed=92, sagas=4, users=1))  # one user: one partition
    await publish_all(env)
    partition = partition_of("user-0", 2)
    sub = await runner.bind(partition, 2)
    msgs = await sub.fetch(10, timeout=2)
    assert len(msgs) == 10

    with pytest.raises(LeaseLost):  # nobody holds it
        await runner.run_batch(msgs, partition)
    other = PartitionLeases(env.pool, "counter", 2)
    await other.renew()
    assert await other.claim((partition,)) == {partition}
    with pytest.raises(LeaseLost):  # another runner holds it
        await runner.run_batch(msgs, partition)
    assert await counter_state(env) == (0, 0, 0) and await total_applied(env, "counter") == 0

    await other.release()
    stale = PartitionLeases(env.pool, "counter", 2, runner_id=runner.runner_id, ttl=0.2)
    assert await stale.claim((partition,)) == {partition}
    await asyncio.sleep(0.3)
    with pytest.raises(LeaseLost):  # its own lease, expired
        await runner.run_batch(msgs, partition)
    assert await counter_state(env) == (0, 0, 0)

    mine = PartitionLeases(env.pool, "counter", 2, runner_id=runner.runner_id)
    assert await mine.claim((partition,)) == {partition}
    await runner.run_batch(msgs, partition)
    assert await counter_state(env) == (10, 10, 10) and await total_applied(env, "counter") == 10
    await sub.unsubscribe()


async def test_a_new_partition_count_builds_a_new_version_beside_the_live_one(env: Env) -> None:
    history = many_users()
    await append_all(env.store, history)
    await publish_all(env)
    await ensure_current(env.pool, env.store, COUNTER)  # v1: the projection's own count, 1
    follower = env.runner(COUNTER, **FAST)  # no count of its own: follows the active version
    async with background() as bg:
        bg.start(follower.run)

        async def caught_up(total: int) -> bool:
            return (await counter_state(env))[0] == total

        await wait_until(lambda: caught_up(len(history.events)), what="v1 caught up", bg=bg)
        [v1] = await current_versions(env.pool, "counter")
        assert v1.partitions == 1

        bg.start(env.runner(COUNTER, partitions=4, **FAST).run)  # builds v2 beside v1, then switches

        async def switched() -> bool:
            async with env.pool.acquire() as conn:
                active = await active_version(conn, "counter")
            return active is not None and active.partitions == 4

        await wait_until(switched, what="a version with 4 partitions active", bg=bg)
        await wait_until(lambda: _shares_are(env, [2, 2]), what="both runners on v2's partitions", bg=bg)
        more = make_history(seed=93, sagas=6, users=12)
        await append_all(env.store, more)
        await publish_all(env)
        total = len(history.events) + len(more.events)
        await wait_until(lambda: caught_up(total), what="v2 caught up", bg=bg)
    assert await counter_state(env) == (total, total, total)
    versions = await env.pool.fetch(
        "SELECT version, state, partitions FROM memsaga.projection_versions WHERE name = 'counter' ORDER BY 1"
    )
    assert [tuple(v) for v in versions] == [(v1.version, "retired", 1), (v1.version + 1, "active", 4)]
    assert follower.partitions == 4 and follower.stats.applied > 0


async def _shares_are(env: Env, want: list[int]) -> bool:
    return await shares(env, "counter", 4) == want


async def publish_shuffled_twice(env: Env, seed: int) -> None:
    """Every event twice, in a shuffled order, each copy with a message id of its own."""
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    events = [e async for batch in env.store.read_all() for e in batch]
    copies = [(event, copy) for event in events for copy in (1, 2)]
    random.Random(seed).shuffle(copies)
    for event, copy in copies:
        headers = event_headers(event)
        headers[MSG_ID] = f"{event.event_id}#{copy}"
        await env.js.publish(
            event_subject(event, env.prefix), event_body(event), stream=env.stream, headers=headers
        )


async def test_partitioned_runners_tolerate_duplicates_and_disorder(env: Env) -> None:
    await ensure_current(env.pool, env.store, COUNTER, partitions=4)
    history = many_users()
    await append_all(env.store, history)
    await publish_shuffled_twice(env, seed=5)
    runners = [env.runner(COUNTER, partitions=4, **FAST) for _ in range(2)]
    total = len(history.events)
    async with background() as bg:
        for runner in runners:
            bg.start(runner.run)

        async def done() -> bool:
            return (await counter_state(env))[0] >= total and await drained(env, runners[0], 4)

        await wait_until(done, what="every copy consumed", bg=bg)
    assert await counter_state(env) == (total, total, total)
    assert sum(r.stats.duplicates for r in runners) == total


async def test_read_your_writes_waits_for_every_partition_or_only_the_users(env: Env) -> None:
    runner = env.runner(COUNTER, partitions=2, **FAST)
    await runner.prepare()
    history = make_history(seed=94, sagas=4, users=2)
    users = sorted({e.user_id for e in history.events if e.user_id})
    assert {partition_of(u, 2) for u in users} == {0, 1}  # user-0 and user-1 fall apart
    await append_all(env.store, history)
    head = await publish_all(env)
    leases = PartitionLeases(env.pool, "counter", 2, runner_id=runner.runner_id)
    await leases.renew()
    assert await leases.claim((0, 1)) == {0, 1}
    first = next(u for u in users if partition_of(u, 2) == 0)
    other = next(u for u in users if u != first)
    assert not await has_applied(env.pool, env.store, COUNTER, head)

    sub = await runner.bind(0, 2)
    msgs = await sub.fetch(100, timeout=2)
    await runner.run_batch(msgs, 0)
    assert not await has_applied(env.pool, env.store, COUNTER, head)  # partition 1 has not
    assert await has_applied(env.pool, env.store, COUNTER, head, user_id=first)
    assert not await has_applied(env.pool, env.store, COUNTER, head, user_id=other)
    own = [e for e in await _events(env) if e.user_id == other]
    assert await has_applied(env.pool, env.store, COUNTER, own[0].position - 1, user_id=other)

    sub1 = await runner.bind(1, 2)
    await runner.run_batch(await sub1.fetch(100, timeout=2), 1)
    assert await has_applied(env.pool, env.store, COUNTER, head)
    assert await has_applied(env.pool, env.store, COUNTER, head, user_id=other)
    assert await counter_state(env) == (len(history.events),) * 3
    await sub.unsubscribe()
    await sub1.unsubscribe()


async def _events(env: Env) -> list[RecordedEvent]:
    return [e async for batch in env.store.read_all() for e in batch]


async def test_an_idle_partition_moves_its_checkpoint_up_to_the_relays_so_lag_is_not_counted_from_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projections.runner, "IDLE_ADVANCE_EVERY", 0.2)
    history = make_history(seed=7, sagas=4, users=1)  # one user: every event in one partition
    busy = partition_of("user-0", 2)
    runner = env.runner(ORDERED, partitions=2, **FAST)
    async with background() as bg:
        bg.start(runner.run)
        await append_all(env.store, history)
        head = await publish_all(env)

        async def caught_up() -> bool:
            positions = await active_partition_positions(env.pool, "ordered")
            return positions is not None and positions.positions == (head, head)

        await wait_until(caught_up, what="both partitions' checkpoints at the relay's", bg=bg)
        status = await projection_status(env.pool, env.store, ORDERED)
    assert status.lag.events == 0 and status.applied == len(history.events)
    [idle] = [p for p in status.partition_detail if p.partition != busy]
    assert idle.applied == 0 and idle.position == head  # moved up without applying anything
