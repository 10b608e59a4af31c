"""Failpoints at the relay's and the runner's dangerous lines: a relay killed between publish and
checkpoint, a projector killed between commit and ack, and every batch delivered twice.
Killed roles run as processes (``memsaga relay``, ``memsaga project``)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from eventstore import failpoints
from projections import MEMORIES, RelayConfig, list_memories, rebuild
from projections.rebuild import ensure_built
from projections.subjects import MSG_ID
from tests.projections.conftest import (
    Env,
    applied,
    background,
    consumer_drained,
    relay_position,
    snapshot,
    wait_until,
)
from tests.projections.counter import COUNTER
from tests.projections.histories import append_all, make_history
from tests.projections.roles import Role

BATCH = 10


def role_env(env: Env, nats_url: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of a role process on this test's database, stream and subjects."""
    return {
        "MEMSAGA_DATABASE_URL": env.dsn,
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_NATS_STREAM": env.stream,
        "MEMSAGA_SUBJECT_PREFIX": env.prefix,
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        "MEMSAGA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
        "MEMSAGA_FAILPOINTS": "",
        **variables,
    }


async def killed(role: Role, timeout: float = 60.0) -> str:
    """Wait for ``role`` to die of SIGKILL; its output."""
    code = await asyncio.wait_for(asyncio.to_thread(role.proc.wait), timeout)
    assert code == -signal.SIGKILL, f"{role.args} exited {code}:\n{role.output()}"
    return role.output()


async def message_ids(js: JetStreamContext, stream: str) -> list[str]:
    """The ``Nats-Msg-Id`` of every message in ``stream``, in stream order."""
    info = await js.stream_info(stream)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        ids.append((msg.headers or {})[MSG_ID])
    return ids


async def test_a_relay_killed_after_publish_before_its_checkpoint_resumes_with_each_event_once(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    await ensure_built(env.pool, env.store, MEMORIES)  # built while empty: every event comes by JetStream
    history = make_history(seed=91, sagas=8)
    await append_all(env.store, history)
    head = await env.store.head_position()
    events = [e for batch in [b async for b in env.store.read_all()] for e in batch]
    window = RelayConfig().max_in_flight
    assert head == len(events) > (window + 1) * BATCH  # more than one checkpoint's worth
    environ = role_env(env, nats_url, tmp_path, MEMSAGA_RELAY_BATCH_SIZE=str(BATCH))

    first = Role(tmp_path, {**environ, "MEMSAGA_FAILPOINTS": "relay.after_publish=kill@2"}, "relay")
    said = await killed(first)
    assert "failpoint relay.after_publish: kill (hit 2)" in said
    # Killed before its second checkpoint: the first covered one batch or more (those acked by
    # then); at least one more batch was acked, and up to a window of batches was sent.
    checkpointed = [e.position for e in events].index(await relay_position(env.pool, env.stream)) + 1
    assert checkpointed % BATCH == 0 and checkpointed >= BATCH
    stored = len(await message_ids(env.js, env.stream))
    assert checkpointed + BATCH <= stored <= checkpointed + window * BATCH

    second = Role(tmp_path, environ, "relay", "--json")
    try:
        await wait_until(lambda: _equal(relay_position(env.pool, env.stream), head), what="relayed")
        second.assert_clean_exit(await second.terminate())
    finally:
        second.kill()
    stats = json.loads(second.out.read_text().splitlines()[-1])
    assert stats["duplicates"] == stored - checkpointed  # sent again: dropped by JetStream's window
    assert stats["published"] == head - checkpointed
    assert await message_ids(env.js, env.stream) == [str(e.event_id) for e in events]  # each once, in order

    runner = env.runner(MEMORIES)
    want = history.count(MEMORIES.event_types)
    async with background() as bg:
        bg.start(runner.run)
        await wait_until(lambda: _equal(applied(env.pool, MEMORIES.name), want), what="applied", bg=bg)
        await wait_until(lambda: consumer_drained(env.js, env.stream, MEMORIES), what="projected", bg=bg)
    assert runner.stats.applied == want and runner.stats.duplicates == 0
    for user, memories in history.memories().items():
        assert {(m.memory_id, m.text) for m in await list_memories(env.pool, user)} == memories


async def test_a_projector_killed_after_commit_before_ack_gets_the_batch_again_and_applies_it_once(
    env: Env, nats_url: str, tmp_path: Path
) -> None:
    await ensure_built(env.pool, env.store, MEMORIES)  # built while empty: every event comes by JetStream
    history = make_history(seed=92, sagas=4)
    want = history.count(MEMORIES.event_types)
    environ = role_env(
        env,
        nats_url,
        tmp_path,
        MEMSAGA_PROJECTION_BATCH_SIZE="5",
        MEMSAGA_PROJECTION_ACK_WAIT_SECONDS="2",
    )
    async with background() as bg:
        bg.start(env.relay().run)
        await append_all(env.store, history)
        head = await env.store.head_position()
        await wait_until(lambda: _equal(relay_position(env.pool, env.stream), head), what="relayed", bg=bg)

        first = Role(tmp_path, {**environ, "MEMSAGA_FAILPOINTS": "projector.after_commit=kill"}, "project")
        said = await killed(first)
        assert "failpoint projector.after_commit: kill (hit 1)" in said
        assert await applied(env.pool, MEMORIES.name) == 5  # committed, never acked

        second = Role(tmp_path, environ, "project", MEMORIES.name)
        try:
            await wait_until(lambda: consumer_drained(env.js, env.stream, MEMORIES), what="drained", bg=bg)
            second.assert_clean_exit(await second.terminate())
        finally:
            second.kill()

    assert await applied(env.pool, MEMORIES.name) == want  # the five once, not twice
    info = await env.js.consumer_info(env.stream, MEMORIES.durable_name)
    assert info.delivered.consumer_seq >= want + 5  # the five were delivered again
    live = await snapshot(env.pool, MEMORIES)
    rebuilt = await rebuild(env.pool, env.store, MEMORIES)
    assert await snapshot(env.pool, MEMORIES, rebuilt.version) == live


@pytest.fixture
def every_batch_twice() -> Iterator[None]:
    failpoints.install("projector.deliver_twice=on@every")
    try:
        yield
    finally:
        failpoints.install(None)


async def test_every_batch_applied_twice_leaves_the_read_model_of_one_delivery(
    env: Env, every_batch_twice: None
) -> None:
    await ensure_built(env.pool, env.store, COUNTER)
    history = make_history(seed=93, sagas=4)
    want = history.count(COUNTER.event_types)
    runner = env.runner(COUNTER, batch_size=7)
    async with background() as bg:
        bg.start(env.relay().run)
        bg.start(runner.run)
        await append_all(env.store, history)
        await wait_until(lambda: _equal(applied(env.pool, COUNTER.name), want), what="applied", bg=bg)
        await wait_until(lambda: consumer_drained(env.js, env.stream, COUNTER), what="drained", bg=bg)

    assert runner.stats.applied == want and runner.stats.duplicates == want  # each batch came twice
    tables = COUNTER.views()
    assert await env.pool.fetchval(f"SELECT n FROM {tables['counter']}") == want  # not idempotent by itself
    seen = await env.pool.fetch(f"SELECT event_id FROM {tables['counter_seen']}")
    assert sorted(str(r["event_id"]) for r in seen) == sorted(str(e.event_id) for e in history.events)


async def _equal(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
