"""The runner: a kill mid-batch loses and doubles nothing; poison events are parked while others flow."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats.errors
import pytest

from projections import (
    MEMORIES,
    ProjectionCodeMismatch,
    drop_parked,
    ensure_built,
    list_parked,
    retry_parked,
)
from tests.projections.conftest import Env, applied, background, consumer_drained, relay_position, wait_until
from tests.projections.counter import CHOOSY, CHOOSY_FIXED, COUNTER, DELAY_ENV, POISON_PREFIX
from tests.projections.counter_runner import APPLICATION_NAME
from tests.projections.histories import append_all, make_history

REPO = Path(__file__).resolve().parents[2]


async def publish_all(env: Env) -> int:
    head = await env.store.head_position()
    await env.relay().run(to_position=head)
    assert await relay_position(env.pool, env.stream) == head
    return head


async def counter_state(env: Env) -> tuple[int, int, int]:
    """(n, rows in counter_seen, distinct event ids in it)."""
    views = COUNTER.views()
    n = await env.pool.fetchval(f"SELECT n FROM {views['counter']}")
    row = await env.pool.fetchrow(f"SELECT count(*), count(DISTINCT event_id) FROM {views['counter_seen']}")
    assert row is not None
    return int(n), int(row[0]), int(row[1])


async def test_an_idle_runner_is_quiet(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """nats-py reports an empty fetch as its TimeoutError or, racing its deadline, as the builtin
    one (an OSError): both mean "nothing yet", never a warning."""
    runner = env.runner(COUNTER, fetch_timeout=0.05)
    stop = asyncio.Event()
    empty = [nats.errors.TimeoutError(), TimeoutError()] * 4

    class IdleSubscription:
        async def fetch(self, batch: int, timeout: float) -> list[object]:
            if not empty:
                stop.set()
                raise nats.errors.TimeoutError
            raise empty.pop()

        async def unsubscribe(self) -> None:
            return None

    async def bind(partition: int = 0, partitions: int = 1) -> IdleSubscription:
        return IdleSubscription()

    runner.bind = bind  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.INFO, logger="projections"):
        await asyncio.wait_for(runner.run(stop), 10)

    assert empty == [] and [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def runner_mid_batch(env: Env) -> bool:
    """Whether the runner process has a transaction open (it is inside a batch)."""
    return bool(
        await env.pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity WHERE application_name = $1
               AND datname = current_database() AND xact_start IS NOT NULL""",
            APPLICATION_NAME,
        )
    )


async def test_a_runner_killed_mid_batch_resumes_without_lost_or_doubled_effects(
    env: Env, nats_url: str
) -> None:
    await ensure_built(env.pool, env.store, COUNTER)  # built empty: every event will come through NATS
    history = make_history(seed=31, sagas=6)
    await append_all(env.store, history)
    total = await publish_all(env)
    assert total == len(history.events) >= 50

    child = subprocess.Popen(
        [sys.executable, "-m", "tests.projections.counter_runner", env.dsn, nats_url, env.stream, env.prefix],
        cwd=REPO,
        env={**os.environ, DELAY_ENV: "0.05"},  # 10 events × 50 ms: half a second per batch
    )
    try:

        async def mid_batch_after_two() -> bool:
            assert child.poll() is None, "the runner process died"
            return (await counter_state(env))[0] >= 20 and await runner_mid_batch(env)

        await wait_until(mid_batch_after_two, what="the runner inside its third batch or later")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)

    n, rows, distinct = await counter_state(env)
    assert 20 <= n < total and n % 10 == 0  # whole batches only: the killed one left no trace
    assert n == rows == distinct == await applied(env.pool, COUNTER.name)

    runner = env.runner(COUNTER, batch_size=10, ack_wait=2.0)  # same durable consumer, a new process
    async with background() as bg:
        bg.start(runner.run)

        async def done() -> bool:
            return (await counter_state(env))[0] == total and await consumer_drained(
                env.js, env.stream, COUNTER
            )

        await wait_until(done, what="counter caught up", bg=bg)
    assert await counter_state(env) == (total, total, total)
    assert await applied(env.pool, COUNTER.name) == total
    assert runner.stats.duplicates == 0 and runner.stats.applied == total - n


async def test_a_failing_handler_parks_its_event_after_n_deliveries_while_others_flow(env: Env) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    history = make_history(seed=41, sagas=5, poison_text=f"{POISON_PREFIX} pill")
    await append_all(env.store, history)
    await publish_all(env)
    created = history.count(("MemoryCreated",))
    poisoned = next(e for e in history.events if e.payload.get("text", "").startswith(POISON_PREFIX))

    runner = env.runner(CHOOSY, max_deliver=3, retry_delay=0.1)
    async with background() as bg:
        bg.start(runner.run)
        await wait_until(lambda: _parked(env), what="the poison event parked", bg=bg)
        await wait_until(lambda: _applied(env, created - 1), what="the others applied", bg=bg)
    [parked] = await list_parked(env.pool)
    assert (parked.projection, parked.event_id, parked.status) == ("choosy", poisoned.event_id, "parked")
    assert parked.deliveries == 3 and parked.error_line == f"ValueError: cannot digest '{POISON_PREFIX} pill'"
    assert parked.stream_id == f"memory-{poisoned.payload['memory_id']}" and parked.position is not None
    assert runner.stats.parked == 1 and runner.stats.failures == 2

    # The handler is fixed and deployed: the retry re-reads the event from the store.
    result = await retry_parked(env.pool, env.store, {"choosy": CHOOSY_FIXED}, poisoned.event_id)
    assert result.ok and result.applied
    assert await applied(env.pool, CHOOSY.name) == created
    assert await list_parked(env.pool) == []
    [retried] = await list_parked(env.pool, include_resolved=True)
    assert retried.status == "retried" and retried.resolved_at is not None


async def test_dlq_drop_records_why_and_keeps_the_event(env: Env) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    history = make_history(seed=42, sagas=2, poison_text=f"{POISON_PREFIX} again")
    await append_all(env.store, history)
    await publish_all(env)
    poisoned = next(e for e in history.events if e.payload.get("text", "").startswith(POISON_PREFIX))
    async with background() as bg:
        bg.start(env.runner(CHOOSY, max_deliver=1).run)
        await wait_until(lambda: _parked(env), what="the poison event parked", bg=bg)

    # Retrying with the still-broken handler keeps it parked, with the new error.
    result = await retry_parked(env.pool, env.store, {"choosy": CHOOSY}, poisoned.event_id)
    assert not result.ok and result.error is not None and "ValueError" in result.error
    with pytest.raises(ValueError, match="reason"):
        await drop_parked(env.pool, poisoned.event_id, "  ")
    dropped = await drop_parked(env.pool, poisoned.event_id, "bad import, ticket 42")
    assert (dropped.status, dropped.drop_reason, dropped.retries) == ("dropped", "bad import, ticket 42", 1)
    assert await list_parked(env.pool) == []
    [kept] = await env.store.read_stream(f"memory-{poisoned.payload['memory_id']}", limit=1)
    assert kept.event_id == poisoned.event_id  # the event itself stays in the store


async def test_a_runner_refuses_a_read_model_built_by_newer_code(env: Env) -> None:
    newer = dataclasses.replace(MEMORIES, version=MEMORIES.version + 1)
    await ensure_built(env.pool, env.store, newer)
    with pytest.raises(ProjectionCodeMismatch, match=r"older code than the read model .*: upgrade it"):
        await env.runner(MEMORIES).start()


async def _parked(env: Env) -> bool:
    return bool(
        await env.pool.fetchval("SELECT count(*) FROM memsaga.projection_parked WHERE status = 'parked'")
    )


async def _applied(env: Env, want: int) -> bool:
    return await applied(env.pool, CHOOSY.name) == want


async def test_heartbeats_keep_a_slow_batch_from_being_redelivered(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_built(env.pool, env.store, COUNTER)
    history = make_history(seed=43, sagas=1)
    await append_all(env.store, history)
    total = await publish_all(env)
    monkeypatch.setenv(DELAY_ENV, str(2.0 / total))  # one batch of ~2 s against an ack wait of 0.6 s
    runner = env.runner(COUNTER, batch_size=total, ack_wait=0.6)
    async with background() as bg:
        bg.start(runner.run)
        await wait_until(lambda: _counted(env, total), what="the slow batch applied", bg=bg)
    info = await env.js.consumer_info(env.stream, COUNTER.durable_name)
    assert info.num_redelivered == 0 and runner.stats.batches == 1 and runner.stats.duplicates == 0


async def _counted(env: Env, total: int) -> bool:
    return (await counter_state(env))[0] == total
