"""End-to-end fixtures: one request through the real client, worker, relay and projection."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import nats.js.errors
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from eventstore import PostgresBlobStore, PostgresEventStore
from memsaga.bootstrap import build_activities, build_stores, build_worker
from memsaga.client import connect
from memsaga.devstack.databases import DatabaseFactory
from memsaga.settings import Settings
from projections import (
    MEMORIES,
    MEMORY_SEARCH,
    Projection,
    ProjectionRunner,
    Relay,
    RelayConfig,
    RunnerConfig,
)
from tests.support import migrated_database


@dataclass
class Stack:
    """Everything one request passes through, running in this process."""

    settings: Settings
    client: Client
    pool: asyncpg.Pool
    store: PostgresEventStore
    blobs: PostgresBlobStore


@contextlib.asynccontextmanager
async def running_stack(
    dsn: str,
    temporal_address: str,
    nats_url: str,
    state_dir: Path,
    projection: Projection | Sequence[Projection],
) -> AsyncIterator[Stack]:
    """A worker, the relay and the runner of each projection on a migrated database, in this process."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=dsn,
        temporal_address=temporal_address,
        nats_url=nats_url,
        task_queue=f"memsaga-e2e-{tag}",
        nats_stream=f"E2E_{tag}",
        subject_prefix=f"e2e{tag}",
        state_dir=state_dir,
    )
    client = await connect(settings)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=20)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    store, blobs = build_stores(pool, settings)
    relay = Relay(
        store,
        js,
        RelayConfig(stream=settings.nats_stream, subject_prefix=settings.subject_prefix, poll_interval=0.2),
        listen_dsn=dsn,
    )
    config = RunnerConfig(
        stream=settings.nats_stream, subject_prefix=settings.subject_prefix, fetch_timeout=0.5, ack_wait=5.0
    )
    projections = [projection] if isinstance(projection, Projection) else list(projection)
    runners = [ProjectionRunner(p, store, js, config) for p in projections]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(relay.run(stop)), *(asyncio.ensure_future(r.run(stop)) for r in runners)]
    try:
        async with build_worker(client, build_activities(pool, settings), task_queue=settings.task_queue):
            yield Stack(settings, client, pool, store, blobs)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(settings.nats_stream)
        await nc.close()
        await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    fresh_database: DatabaseFactory,
    temporal_address: str,
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    _global_span_exporter: InMemorySpanExporter,  # tracing set up before the client connects
) -> AsyncIterator[Stack]:
    dsn = await migrated_database(fresh_database)
    state_dir = Path(tmp_path_factory.mktemp("state"))
    async with running_stack(dsn, temporal_address, nats_url, state_dir, MEMORIES) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def search_stack(
    fresh_pgvector_database: DatabaseFactory,
    temporal_address: str,
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    _global_span_exporter: InMemorySpanExporter,
) -> AsyncIterator[Stack]:
    """:func:`stack` with the memory_search projection, on a PostgreSQL that has pgvector."""
    async with pgvector_stack(
        fresh_pgvector_database, temporal_address, nats_url, tmp_path_factory, MEMORY_SEARCH
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def pgvector_stack(
    databases: DatabaseFactory,
    temporal_address: str,
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    projection: Projection | Sequence[Projection],
) -> AsyncIterator[Stack]:
    """:func:`running_stack` on a fresh migrated database of a PostgreSQL that has pgvector."""
    dsn = await migrated_database(databases)
    state_dir = Path(tmp_path_factory.mktemp("state"))
    async with running_stack(dsn, temporal_address, nats_url, state_dir, projection) as running:
        yield running
