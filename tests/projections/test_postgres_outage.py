"""PostgreSQL stopped and started again on its data dir and port: relay and runner carry on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import nats.js.errors
import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_registry, create_pool
from memsaga.devstack import DatabaseFactory, start_postgres, with_database
from memsaga.devstack.postgres import stop_postgres
from memsaga.settings import Settings
from memsaga.stackstate import ServiceState
from projections import MEMORIES, list_memories
from tests.projections.conftest import Env, applied, background, relay_position, wait_until
from tests.projections.histories import append_all, make_history
from tests.projections.roles import Role
from tests.support import migrated_database


class OwnPostgres:
    """A private PostgreSQL that can be stopped and started again on the same data dir and port."""

    def __init__(self) -> None:
        # Outside pytest's temporary root: its 0700 would lock out PostgreSQL's system user (as root).
        self.state_dir = Path(tempfile.mkdtemp(prefix="memsaga-test-pg-outage-"))
        self.service: ServiceState | None = None
        self.port: int | None = None

    async def start(self) -> str:
        self.service = await start_postgres(self.state_dir, port=self.port)
        self.port = urlsplit(self.service.url).port
        return with_database(self.service.url, "postgres")

    def stop(self) -> None:
        if self.service is not None:
            stop_postgres(self.service)
            self.service = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def own_env(js: JetStreamContext) -> AsyncIterator[tuple[Env, OwnPostgres]]:
    server = OwnPostgres()
    try:
        dsn = await migrated_database(DatabaseFactory(await server.start()))
        pool = await create_pool(Settings(database_url=dsn), min_size=2)  # memsaga's, as the roles use
        tag = uuid.uuid4().hex[:10]
        env = Env(dsn, pool, PostgresEventStore(pool, build_registry()), js, f"T_{tag}", f"t{tag}")
        try:
            yield env, server
        finally:
            pool.terminate()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(env.stream)
    finally:
        server.remove()


async def test_postgres_restarted_on_its_port_relay_and_runner_carry_on(
    own_env: tuple[Env, OwnPostgres], caplog: pytest.LogCaptureFixture
) -> None:
    env, server = own_env
    caplog.set_level(logging.INFO, logger="projections")
    first, second = make_history(seed=81, sagas=6), make_history(seed=82, sagas=6)
    relay = env.relay(initial_backoff=0.1, max_backoff=0.5)
    runner = env.runner(MEMORIES, fetch_timeout=0.3)
    async with background() as bg:
        bg.start(relay.run)
        bg.start(runner.run)
        await append_all(env.store, first)
        head = await env.store.head_position()
        await wait_until(lambda: _at_least(relay_position(env.pool, env.stream), head), what="relayed", bg=bg)
        await wait_until(lambda: _true(relay.wakeup.listening), what="relay listening", bg=bg)

        await asyncio.to_thread(server.stop)
        await wait_until(lambda: _true(relay.outage.ongoing), what="relay sees the outage", bg=bg)
        await asyncio.sleep(2.0)  # an outage of several retries (backoff 0.1 s to 0.5 s)
        await server.start()  # same data dir, same port

        await append_all(env.store, second)
        head = await env.store.head_position()
        await wait_until(
            lambda: _at_least(relay_position(env.pool, env.stream), head), what="caught up", bg=bg
        )
        want = first.count(MEMORIES.event_types) + second.count(MEMORIES.event_types)
        await wait_until(lambda: _at_least(applied(env.pool, MEMORIES.name), want), what="projected", bg=bg)
        await wait_until(lambda: _true(relay.wakeup.listening), what="LISTEN again", bg=bg)

    for history in (first, second):
        for user, memories in history.memories().items():
            assert {(m.memory_id, m.text) for m in await list_memories(env.pool, user)} >= memories
    assert await applied(env.pool, MEMORIES.name) == want  # nothing twice
    waits = [r.getMessage() for r in caplog.records if "waiting for PostgreSQL" in r.getMessage()]
    assert 1 <= len([w for w in waits if w.startswith("relay")]) <= 2, waits  # per outage, not per retry
    assert relay.stats.retries > len(waits)
    assert not [r for r in caplog.records if r.exc_info], "an outage logs no traceback"


async def _at_least(value: object, want: int) -> bool:
    return bool(await value >= want)  # type: ignore[misc,operator]


async def _true(value: bool) -> bool:
    return value


async def test_relay_and_projector_processes_outlive_a_postgres_restart_and_stop_while_it_is_away(
    own_env: tuple[Env, OwnPostgres], nats_url: str, tmp_path: Path
) -> None:
    env, server = own_env
    environ = {
        "MEMSAGA_DATABASE_URL": env.dsn,
        "MEMSAGA_NATS_URL": nats_url,
        "MEMSAGA_NATS_STREAM": env.stream,
        "MEMSAGA_SUBJECT_PREFIX": env.prefix,
        "MEMSAGA_STATE_DIR": str(tmp_path / "state"),
        "MEMSAGA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
    }
    first, second = make_history(seed=83, sagas=5), make_history(seed=84, sagas=5)
    want = first.count(MEMORIES.event_types) + second.count(MEMORIES.event_types)
    relay = Role(tmp_path, environ, "relay")
    projector = Role(tmp_path, environ, "project", "memories")
    try:
        await projector.said("running memories")
        await append_all(env.store, first)
        head = await env.store.head_position()
        await wait_until(
            lambda: _at_least(relay_position(env.pool, env.stream), head), what="relayed", timeout=60
        )

        await asyncio.to_thread(server.stop)
        await relay.said("waiting for PostgreSQL")  # an idle projector needs no database: it may not notice
        await server.start()
        await append_all(env.store, second)
        await wait_until(
            lambda: _at_least(applied(env.pool, MEMORIES.name), want), what="projected", timeout=60
        )
        await relay.said("works again")

        await asyncio.to_thread(server.stop)  # SIGTERM while PostgreSQL is away: a clean stop
        await _said_twice(relay, "waiting for PostgreSQL")
        relay.assert_clean_exit(await relay.terminate())
        projector.assert_clean_exit(await projector.terminate())
    finally:
        relay.kill()
        projector.kill()
    assert projector.count("waiting for PostgreSQL") <= 2  # at most once per outage
    await server.start()
    assert await applied(env.pool, MEMORIES.name) == want  # each once
    for history in (first, second):
        for user, memories in history.memories().items():
            assert {(m.memory_id, m.text) for m in await list_memories(env.pool, user)} >= memories


async def _said_twice(role: Role, text: str) -> None:
    await wait_until(lambda: _true(role.count(text) >= 2), what=f"{text!r} twice", timeout=30)
    assert role.count(text) == 2, role.output()  # once per outage, not once per retry
