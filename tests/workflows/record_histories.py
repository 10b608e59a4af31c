"""Regenerate the saved workflow histories that ``test_replay.py`` replays.

Run it after a *deliberate* change to the workflow's commands (and guard old runs with
``workflow.patched`` first, see docs/sagas.md)::

    .venv/bin/python -m tests.workflows.record_histories [OUT_DIR]

It uses ``MEMSAGA_TEST_DATABASE_URL`` / ``MEMSAGA_TEST_TEMPORAL_ADDRESS`` when set, else starts
a private PostgreSQL and Temporal dev server in a temporary directory. It runs one saga of each
shape on an in-process worker and writes ``<shape>.json`` (``WorkflowHistory.to_json()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from eventstore import migrate
from memsaga.bootstrap import MIGRATION_SOURCES, build_activities, build_stores, build_worker
from memsaga.client import approve_extraction, cancel_extraction, extraction_result, reject_extraction
from memsaga.devstack import create_database, start_postgres, start_temporal, stop_service, with_database
from memsaga.settings import Settings
from sagas.memory_extraction.domain import ExtractionRequest
from tests.workflows.support import HISTORIES, SENSITIVE_EPISODE, SagaEnv, closed_port, request

SHAPES = ("completed", "approved", "rejected", "timed_out", "failed", "cancelled")
"""One history per way a saga can end (file ``<shape>.json``)."""
MANIFEST = "workflow_ids.json"
"""``{shape: workflow id}``: the Replayer needs each history's workflow id."""


async def record_histories(env: SagaEnv, out_dir: Path) -> list[Path]:
    """Run one saga per shape on ``env`` and save each history; the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = {
        "completed": await _completed(env),
        "approved": await _reviewed(env, approve=True),
        "rejected": await _reviewed(env, approve=False),
        "timed_out": await _finished(env, request(review=True, review_timeout_seconds=0.5)),
        "failed": await _finished(env, request(embedder="http", embedder_base_url=_nowhere())),
        "cancelled": await _cancelled(env),
    }
    written = []
    for shape, workflow_id in runs.items():
        history = await env.client.get_workflow_handle(workflow_id).fetch_history()
        path = out_dir / f"{shape}.json"
        path.write_text(history.to_json(), encoding="utf-8")
        written.append(path)
    (out_dir / MANIFEST).write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return written


def _nowhere() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


async def _finished(env: SagaEnv, saga_request: ExtractionRequest) -> str:
    handle = await env.start(saga_request)
    with contextlib.suppress(WorkflowFailureError):  # the failed shape ends so on purpose
        await extraction_result(env.client, handle.workflow_id)
    return handle.workflow_id


async def _completed(env: SagaEnv) -> str:
    return await _finished(env, request())


async def _reviewed(env: SagaEnv, *, approve: bool) -> str:
    handle = await env.start(request(SENSITIVE_EPISODE))
    await env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    if approve:
        await approve_extraction(env.client, handle.workflow_id, reviewer="recorder")
    else:
        await reject_extraction(
            env.client, handle.workflow_id, reviewer="recorder", reason="recorded rejection"
        )
    await extraction_result(env.client, handle.workflow_id)
    return handle.workflow_id


async def _cancelled(env: SagaEnv) -> str:
    handle = await env.start(request(review=True))
    await env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    await cancel_extraction(env.client, handle.workflow_id)
    try:
        await extraction_result(env.client, handle.workflow_id)
    except WorkflowFailureError:
        return handle.workflow_id
    raise AssertionError("the cancelled saga completed")


@asynccontextmanager
async def saga_env_for(database_url: str, temporal_address: str) -> AsyncIterator[SagaEnv]:
    """An in-process worker on a fresh task queue over an already migrated database."""
    settings = Settings(
        database_url=database_url,
        temporal_address=temporal_address,
        task_queue=f"record-{uuid.uuid4().hex[:8]}",
        state_dir=Path(tempfile.mkdtemp()),
    )
    client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    try:
        store, blobs = build_stores(pool, settings)
        async with build_worker(client, build_activities(pool, settings), task_queue=settings.task_queue):
            yield SagaEnv(client, pool, store, blobs, settings)
    finally:
        await pool.close()


async def main(out_dir: Path) -> None:
    """Record every shape into ``out_dir``, with services from the environment or started here."""
    with tempfile.TemporaryDirectory(prefix="memsaga-histories-") as tmp:
        started = []
        admin = os.environ.get("MEMSAGA_TEST_DATABASE_URL")
        address = os.environ.get("MEMSAGA_TEST_TEMPORAL_ADDRESS")
        try:
            if admin is None:
                started.append(postgres := await start_postgres(Path(tmp) / "pg"))
                admin = with_database(postgres.url, "postgres")
            if address is None:
                started.append(temporal := await start_temporal(Path(tmp) / "temporal"))
                address = temporal.url
            name = f"memsaga_histories_{uuid.uuid4().hex[:8]}"
            await create_database(admin, name)
            database_url = with_database(admin, name)
            conn = await asyncpg.connect(database_url)
            try:
                await migrate(conn, MIGRATION_SOURCES)
            finally:
                await conn.close()
            async with saga_env_for(database_url, address) as env:
                for path in await record_histories(env, out_dir):
                    print(f"wrote {path}")
        finally:
            for service in started:
                stop_service(service)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HISTORIES))
