"""The relay's and runners' metrics, read back through the session's ``InMemoryMetricReader``:
published events and lag, a wait at a commit-order gap (also as ``memsaga doctor`` sees it),
applied, parked and redelivered events per projection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import memsaga.doctor.database as doctor_database
from memsaga.doctor.database import gap_check
from projections.rebuild import ensure_built
from tests.metric_points import gauge, histogram, total
from tests.projections.conftest import Env, applied, background, relay_position, wait_until
from tests.projections.counter import CHOOSY, COUNTER, POISON_PREFIX
from tests.projections.histories import append_all, make_history
from tests.projections.test_tail_completeness import _memories


async def test_relay_and_runner_report_published_applied_and_lag(
    env: Env, metric_reader: InMemoryMetricReader
) -> None:
    history = make_history(seed=91, sagas=6)
    await append_all(env.store, history)
    head = await env.store.head_position()
    before = total(metric_reader, "memsaga.projection.applied", projection=COUNTER.name)

    async with background() as bg:
        bg.start(env.relay().run)
        bg.start(env.runner(COUNTER).run)
        await wait_until(lambda: _relayed(env, head), what="the relay to catch up", bg=bg)
        await wait_until(lambda: _applied(env, COUNTER.name, head), what="the counter applied", bg=bg)
        later = make_history(seed=92, sagas=1)  # arrives through JetStream, after the first build
        await append_all(env.store, later)
        head = await env.store.head_position()
        await wait_until(lambda: _relayed(env, head), what="the relay to catch up again", bg=bg)
        await wait_until(lambda: _applied(env, COUNTER.name, head), what="the later events applied", bg=bg)

        async def settled() -> bool:
            return (
                gauge(metric_reader, "memsaga.relay.lag", stream=env.stream) == 0
                and gauge(metric_reader, "memsaga.projection.lag", projection=COUNTER.name) == 0
            )

        await wait_until(settled, timeout=10, what="both lags at 0", bg=bg)

    assert total(metric_reader, "memsaga.relay.published", stream=env.stream, duplicate=False) == head
    assert total(metric_reader, "memsaga.relay.published", stream=env.stream, duplicate=True) == 0
    # The first build applied the first history from the store; the runner, what came later.
    assert (
        total(metric_reader, "memsaga.projection.applied", projection=COUNTER.name) - before == later.count()
    )
    assert await applied(env.pool, COUNTER.name) == head


async def test_a_wait_at_a_commit_order_gap_is_counted_timed_and_shown_by_doctor(
    env: Env, metric_reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = 0.6
    async with background() as bg:
        bg.start(env.relay().run)
        async with env.pool.acquire() as conn, conn.transaction():
            await env.store.append(f"memory-{uuid.uuid4().hex}", _memories(1, 1), conn=conn)  # in flight
            await env.store.append(f"memory-{uuid.uuid4().hex}", _memories(1, 2))  # committed after it
            await wait_until(
                lambda: _counted(metric_reader, "memsaga.relay.gap_waits", env.stream, 1),
                what="the relay to stop at the gap",
                bg=bg,
            )
            monkeypatch.setattr(doctor_database, "GAP_WARN_SECONDS", 0.1)
            await asyncio.sleep(0.2)
            seen = await gap_check(env.pool)  # what `memsaga doctor` says meanwhile
            await asyncio.sleep(hold)
        head = await env.store.head_position()
        await wait_until(lambda: _relayed(env, head), what="the relay past the gap", bg=bg)
    count, _, longest = histogram(metric_reader, "memsaga.relay.gap_wait.duration", stream=env.stream)
    assert total(metric_reader, "memsaga.relay.gap_waits", stream=env.stream) == 1
    assert count == 1 and longest >= hold
    assert gauge(metric_reader, "memsaga.relay.gap_wait.current", stream=env.stream) == 0
    assert seen.status == "warn" and "1 append(s) in flight" in seen.detail
    assert "pg_terminate_backend" in (seen.hint or "")


async def test_parked_events_and_redeliveries_are_counted_per_projection(
    env: Env, metric_reader: InMemoryMetricReader
) -> None:
    await ensure_built(env.pool, env.store, CHOOSY)
    await append_all(env.store, make_history(seed=93, sagas=4, poison_text=f"{POISON_PREFIX} pill"))
    head = await env.store.head_position()
    await env.relay().run(to_position=head)
    parked_before = total(metric_reader, "memsaga.projection.parked", projection=CHOOSY.name)
    again_before = total(metric_reader, "memsaga.projection.redeliveries", projection=CHOOSY.name)

    runner = env.runner(CHOOSY, max_deliver=3, retry_delay=0.1)
    async with background() as bg:
        bg.start(runner.run)

        async def parked() -> bool:
            return total(metric_reader, "memsaga.projection.parked", projection=CHOOSY.name) > parked_before

        await wait_until(parked, what="the poison event parked", bg=bg)
    assert total(metric_reader, "memsaga.projection.parked", projection=CHOOSY.name) - parked_before == 1
    # Delivered three times: the second and the third are redeliveries.
    assert total(metric_reader, "memsaga.projection.redeliveries", projection=CHOOSY.name) - again_before == 2


async def _relayed(env: Env, head: int) -> bool:
    return await relay_position(env.pool, env.stream) >= head


async def _applied(env: Env, name: str, count: int) -> bool:
    return await applied(env.pool, name) >= count


async def _counted(reader: InMemoryMetricReader, name: str, stream: str, at_least: int) -> bool:
    return total(reader, name, stream=stream) >= at_least
