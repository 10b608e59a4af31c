"""Projection fixtures: a migrated fresh database per test, NATS names of its own per test,
and helpers to run relays and runners in the background and wait for them."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats
import nats.js.errors
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_registry
from memsaga.devstack import DatabaseFactory
from projections import Projection, ProjectionRunner, Relay, RelayConfig, RunnerConfig
from tests.support import migrated_database


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@dataclass
class Env:
    """One test's world: a database, a store on it, and a stream + subject prefix of its own."""

    dsn: str
    pool: asyncpg.Pool
    store: PostgresEventStore
    js: JetStreamContext
    stream: str
    prefix: str

    def relay_config(self, **kwargs: Any) -> RelayConfig:
        kwargs.setdefault("poll_interval", 0.2)
        return RelayConfig(stream=self.stream, subject_prefix=self.prefix, **kwargs)

    def runner_config(self, **kwargs: Any) -> RunnerConfig:
        kwargs.setdefault("fetch_timeout", 0.5)
        kwargs.setdefault("ack_wait", 5.0)
        return RunnerConfig(stream=self.stream, subject_prefix=self.prefix, **kwargs)

    def relay(self, **kwargs: Any) -> Relay:
        return Relay(self.store, self.js, self.relay_config(**kwargs), listen_dsn=self.dsn)

    def runner(self, projection: Projection, **kwargs: Any) -> ProjectionRunner:
        return ProjectionRunner(projection, self.store, self.js, self.runner_config(**kwargs))


async def make_env(fresh_database: DatabaseFactory, js: JetStreamContext) -> AsyncIterator[Env]:
    dsn = await migrated_database(fresh_database)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=20)
    tag = uuid.uuid4().hex[:10]
    env = Env(dsn, pool, PostgresEventStore(pool, build_registry()), js, f"T_{tag}", f"t{tag}")
    try:
        yield env
    finally:
        await pool.close()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(env.stream)


@pytest_asyncio.fixture(loop_scope="session")
async def env(fresh_database: DatabaseFactory, js: JetStreamContext) -> AsyncIterator[Env]:
    async for value in make_env(fresh_database, js):
        yield value


class Background:
    """Coroutines run as tasks until the block ends; a failing one fails the test."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self, factory: Callable[[asyncio.Event], Awaitable[Any]]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(factory(self.stop))
        self.tasks.append(task)
        return task

    def check(self) -> None:
        for task in self.tasks:
            error = task.exception() if task.done() else None
            if error is not None:
                raise error


@contextlib.asynccontextmanager
async def background() -> AsyncIterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.stop.set()
        results = await asyncio.wait_for(asyncio.gather(*bg.tasks, return_exceptions=True), timeout=30)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    bg: Background | None = None,
) -> float:
    """Poll until ``predicate`` holds; the seconds it took. Fails fast when a background task died."""
    started = time.monotonic()
    while not await predicate():
        if bg is not None:
            bg.check()
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def applied(pool: asyncpg.Pool, name: str) -> int:
    """Events applied to the active version of a projection (0 before its first build)."""
    value = await pool.fetchval(
        """SELECT v.applied FROM memsaga.projections p JOIN memsaga.projection_versions v
           ON v.name = p.name AND v.version = p.active_version WHERE p.name = $1""",
        name,
    )
    return int(value or 0)


async def relay_position(pool: asyncpg.Pool, stream: str) -> int:
    value = await pool.fetchval("SELECT position FROM memsaga.relay_checkpoints WHERE stream = $1", stream)
    return int(value or 0)


async def consumer_drained(js: JetStreamContext, stream: str, projection: Projection) -> bool:
    info = await js.consumer_info(stream, projection.durable_name)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def built(pool: asyncpg.Pool, name: str) -> bool:
    """Whether the projection has an active read model."""
    return bool(await pool.fetchval("SELECT count(*) FROM memsaga.projections WHERE name = $1", name))


SYSTEM_TIME = frozenset({"recorded_at", "recorded_until"})


async def snapshot(
    pool: asyncpg.Pool, projection: Projection, version: int | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a read-model version (the active one by default), sorted: comparable across databases.

    System-time columns (``recorded_at``, ``recorded_until``) are left out: they say when *this*
    database stored an event, so they differ between databases that hold the same history.
    """
    tables = projection.views() if version is None else projection.tables_at(version)
    result = {}
    for logical, table in tables.items():
        rows = await pool.fetch(f"SELECT * FROM {table}")
        result[logical] = sorted(
            (tuple(v for k, v in r.items() if k not in SYSTEM_TIME) for r in rows), key=repr
        )
    return result


@pytest_asyncio.fixture(loop_scope="session")
async def search_world(
    fresh_pgvector_database: DatabaseFactory,
) -> AsyncIterator[tuple[asyncpg.Pool, PostgresEventStore]]:
    """A migrated database on a PostgreSQL with pgvector: a pool and an event store on it."""
    dsn = await migrated_database(fresh_pgvector_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5)
    try:
        yield pool, PostgresEventStore(pool, build_registry())
    finally:
        await pool.close()
