"""Saga fixtures: per test module, a migrated database and an in-process worker on its own
task queue, against the session's Temporal dev server (``temporal_address``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client

from memsaga.bootstrap import build_activities, build_stores, build_worker
from memsaga.client import connect
from memsaga.devstack.databases import DatabaseFactory
from memsaga.settings import Settings
from tests.support import migrated_database
from tests.workflows.support import SagaEnv


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def saga_dsn(fresh_database: DatabaseFactory) -> str:
    """A new database with every memsaga schema applied."""
    return await migrated_database(fresh_database)


@pytest.fixture(scope="module")
def saga_settings(saga_dsn: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of this module's worker: its own task queue, no local-stack state file."""
    return Settings(
        database_url=saga_dsn,
        temporal_address=temporal_address,
        task_queue=f"memsaga-test-{uuid.uuid4().hex[:10]}",
        state_dir=Path(tmp_path_factory.mktemp("state")),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def temporal_client(saga_settings: Settings) -> Client:
    """A client as memsaga connects one: the pydantic data converter, each saga's payloads sealed."""
    return await connect(saga_settings)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def saga_env(saga_settings: Settings, temporal_client: Client) -> AsyncIterator[SagaEnv]:
    """A running in-process worker (workflows + activities) and the stores it writes."""
    pool = await asyncpg.create_pool(saga_settings.require_database_url(), min_size=1, max_size=10)
    try:
        store, blobs = build_stores(pool, saga_settings)
        worker = build_worker(
            temporal_client, build_activities(pool, saga_settings), task_queue=saga_settings.task_queue
        )
        async with worker:
            yield SagaEnv(temporal_client, pool, store, blobs, saga_settings)
    finally:
        await pool.close()
