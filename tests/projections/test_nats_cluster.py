"""A 3-node JetStream cluster loses its stream leader twice while events are appended.

Three nats-servers from ``memsaga.devstack.nats_cluster`` (as ``memsaga dev up --nats-cluster 3``
starts them), the events stream on 3 replicas, a relay and a memories runner each on a
connection of its own that names all three servers. While a writer appends the way sagas do
(through the store), the stream's leader is SIGKILLed; once a successor leads, the killed node
is started again (two of three must be up for a quorum), and then the successor is SIGKILLed.
Relay and runner carry on: every appended event is in JetStream exactly once (JetStream's
duplicate window drops the relay's re-sends) and in the read model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import asyncpg
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_registry
from memsaga.devstack import DatabaseFactory
from memsaga.devstack.nats_cluster import restart_nodes, start_nats_cluster, stop_nats_cluster
from memsaga.stackstate import ServiceState
from projections import (
    MEMORIES,
    ProjectionRunner,
    Relay,
    RelayConfig,
    RunnerConfig,
    connect_nats,
    list_memories,
)
from projections.stream import ensure_stream
from projections.subjects import MSG_ID
from tests.projections.conftest import applied, background, relay_position, wait_until
from tests.projections.histories import Append, History, make_history
from tests.support import migrated_database

STREAM, PREFIX = "CLUSTER_EVENTS", "cluster"


async def test_losing_the_stream_leader_twice_loses_nothing(
    fresh_database: DatabaseFactory, tmp_path: Path
) -> None:
    state = await start_nats_cluster(tmp_path / ".memsaga", 3)
    try:
        await _run(state, fresh_database)
    finally:
        stop_nats_cluster(state)  # the nodes it started first (a restarted one is stopped by _run)


async def _run(cluster: ServiceState, fresh_database: DatabaseFactory) -> None:
    dsn = await migrated_database(fresh_database)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    store = PostgresEventStore(pool, build_registry())
    clients = [await connect_nats(cluster.url, name=f"cluster-{role}", reconnect_wait=0.2) for role in "rpa"]
    relay_nc, runner_nc, admin = clients
    js = admin.jetstream(timeout=2.0)
    await ensure_stream(js, STREAM, subject_prefix=PREFIX, replicas=3)
    relay = Relay(
        store,
        relay_nc.jetstream(timeout=2.0),
        RelayConfig(
            stream=STREAM,
            subject_prefix=PREFIX,
            poll_interval=0.2,
            publish_timeout=2.0,
            max_backoff=0.5,
            replicas=3,
        ),
        listen_dsn=dsn,
    )
    runner = ProjectionRunner(
        MEMORIES,
        store,
        runner_nc.jetstream(timeout=2.0),
        RunnerConfig(stream=STREAM, subject_prefix=PREFIX, fetch_timeout=0.3),
    )
    history = make_history(seed=19, sagas=150)
    written: list[Append] = []
    state = cluster
    failovers: list[tuple[str, str, float]] = []  # killed leader, its successor, seconds between
    try:
        async with background() as bg:
            bg.start(relay.run)
            bg.start(runner.run)
            writing = asyncio.Event()
            writer = bg.start(lambda _stop: _write(store, history, written, writing))
            await wait_until(lambda: _true(len(written) >= 40), what="appends under way", bg=bg)
            failovers.append(await _kill_leader(js, state))
            await wait_until(lambda: _true(len(written) >= 120), what="appends after a failover", bg=bg)
            state = await restart_nodes(state, [failovers[0][0]])  # two of three for a quorum
            await wait_until(lambda: _all_current(js), timeout=60, what="replicas current", bg=bg)
            failovers.append(await _kill_leader(js, state))
            count = len(written)
            await wait_until(lambda: _true(len(written) >= count + 40), what="appends after it", bg=bg)
            writing.set()
            await writer
            done = History(appends=written)
            head = await store.head_position()
            assert head == len(done.events)
            await wait_until(lambda: _relayed(pool, head), timeout=60, what="everything relayed", bg=bg)
            want = done.count(MEMORIES.event_types)
            await wait_until(lambda: _applied(pool, want), timeout=60, what="memories caught up", bg=bg)

        print(f"failovers (killed, successor, s): {failovers}; {len(written)} appends; relay {relay.stats}")
        assert failovers[0][1] == failovers[1][0]  # the successor was the second one killed
        info = await _retrying(lambda: js.stream_info(STREAM))
        assert info.state.messages == head  # every event once: the relay's re-sends were dropped
        consumer = await js.consumer_info(STREAM, MEMORIES.durable_name)
        assert consumer.cluster is not None and len(consumer.cluster.replicas or []) == 2  # R3 too
        ids = [((await js.get_msg(STREAM, seq)).headers or {}).get(MSG_ID) for seq in range(1, head + 1)]
        assert sorted(i for i in ids if i) == sorted(str(e.event_id) for e in done.events)
        for user, memories in done.memories().items():
            assert {(m.memory_id, m.text) for m in await list_memories(pool, user)} == memories
    finally:
        for client in clients:
            await client.close()
        await pool.close()
        stop_nats_cluster(state)


async def _write(
    store: PostgresEventStore, history: History, written: list[Append], enough: asyncio.Event
) -> None:
    """Append the history's appends one by one, as sagas do, until ``enough`` is set."""
    for append in history.appends:
        if enough.is_set():
            return
        await store.append(append.stream_id, append.events)
        written.append(append)
        await asyncio.sleep(0.02)
    raise AssertionError("the history ran out before the failovers were done")


async def _kill_leader(js: JetStreamContext, cluster: ServiceState) -> tuple[str, str, float]:
    """SIGKILL the node leading the stream; it, the node that leads next, and how long that took."""
    leader = await _leader(js)
    killed_at = time.monotonic()
    os.kill(next(n.pid for n in cluster.nodes if n.name == leader and n.pid), signal.SIGKILL)
    successor = await _new_leader(js, leader)
    return leader, successor, round(time.monotonic() - killed_at, 2)


async def _true(value: bool) -> bool:
    return value


async def _retrying(request: object) -> StreamInfo:
    """``request()`` until JetStream answers (it does not while a leader is elected)."""
    assert callable(request)
    for _ in range(100):
        try:
            result: StreamInfo = await request()
            return result
        except (TimeoutError, nats.errors.Error):
            await asyncio.sleep(0.2)
    raise AssertionError("JetStream did not answer for 20s")


async def _leader(js: JetStreamContext) -> str:
    info = await _retrying(lambda: js.stream_info(STREAM))
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def _new_leader(js: JetStreamContext, old: str) -> str:
    for _ in range(150):
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            info = await js.stream_info(STREAM)
            if info.cluster is not None and info.cluster.leader not in (None, old):
                return info.cluster.leader
        await asyncio.sleep(0.2)
    raise AssertionError(f"no stream leader after {old} for 30s")


async def _all_current(js: JetStreamContext) -> bool:
    try:
        info = await js.stream_info(STREAM)
    except (TimeoutError, nats.errors.Error):
        return False
    replicas = info.cluster.replicas if info.cluster is not None else None
    return bool(replicas) and all(p.current and not p.offline for p in replicas or [])


async def _relayed(pool: asyncpg.Pool, head: int) -> bool:
    return await relay_position(pool, STREAM) >= head


async def _applied(pool: asyncpg.Pool, want: int) -> bool:
    return await applied(pool, MEMORIES.name) == want
