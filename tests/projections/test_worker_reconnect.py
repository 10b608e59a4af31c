"""A worker process outlives a restart of Temporal on its address: sagas started after it run."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from memsaga.client import connect, extraction_result, start_extraction
from memsaga.devstack import start_temporal, stop_service
from memsaga.devstack.databases import DatabaseFactory
from memsaga.settings import Settings
from memsaga.stackstate import ServiceState
from tests.projections.roles import Role
from tests.support import migrated_database
from tests.workflows.support import request

pytestmark = pytest.mark.services


@pytest_asyncio.fixture(loop_scope="session")
async def own_temporal() -> AsyncIterator[tuple[Path, ServiceState]]:
    """A private Temporal dev server (its own SQLite file), to stop and start again."""
    state_dir = Path(tempfile.mkdtemp(prefix="memsaga-test-temporal-restart-"))
    service = await start_temporal(state_dir)
    try:
        yield state_dir, service
    finally:
        stop_service(service)  # a no-op once the test stopped it
        shutil.rmtree(state_dir, ignore_errors=True)


async def _lines(role: Role, text: str, count: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while role.count(text) < count:
        assert asyncio.get_running_loop().time() < deadline, role.output()
        await asyncio.sleep(0.1)


async def test_worker_keeps_polling_after_temporal_restarts_on_its_address(
    own_temporal: tuple[Path, ServiceState], fresh_database: DatabaseFactory, tmp_path: Path
) -> None:
    state_dir, first = own_temporal
    dsn = await migrated_database(fresh_database)
    settings = Settings(
        database_url=dsn,
        temporal_address=first.url,
        task_queue=f"memsaga-test-{uuid.uuid4().hex[:10]}",
        state_dir=tmp_path / "state",
    )
    environ = {
        "MEMSAGA_DATABASE_URL": dsn,
        "MEMSAGA_TEMPORAL_ADDRESS": first.url,
        "MEMSAGA_TASK_QUEUE": settings.task_queue,
        "MEMSAGA_STATE_DIR": str(settings.state_dir),
    }
    worker = Role(tmp_path, environ, "worker")
    second: ServiceState | None = None
    try:
        await worker.said("memsaga worker ready", timeout=60)
        stop_service(first)
        await worker.said(f"waiting for Temporal at {first.url}")  # its pollers fail meanwhile
        ports = (int(first.url.rsplit(":", 1)[1]), int((first.ui_url or ":0").rsplit(":", 1)[1]))
        second = await start_temporal(state_dir, ports=ports)
        assert second.url == first.url

        client = await connect(settings)
        handle = await start_extraction(client, request("I live in Porto."), settings=settings)
        result = await asyncio.wait_for(extraction_result(client, handle.workflow_id), 60)
        assert result.outcome == "completed"
        await worker.said("works again after")
        assert worker.count("waiting for Temporal") == 1  # once, not once per check

        stop_service(second)  # SIGTERM while Temporal is away: still a clean stop
        await _lines(worker, "waiting for Temporal", 2)
        worker.assert_clean_exit(await worker.terminate())
    finally:
        worker.kill()
        if second is not None:
            stop_service(second)
