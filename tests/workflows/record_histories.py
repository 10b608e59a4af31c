"""Regenerate the saved workflow histories that ``test_replay.py`` replays.

Run it after a *deliberate* change to the workflow's commands (and guard old runs with
``workflow.patched`` first, see docs/sagas.md)::

    .venv/bin/python -m tests.workflows.record_histories [OUT_DIR] [--only SHAPE,SHAPE...]

It uses ``MEMSAGA_TEST_DATABASE_URL`` / ``MEMSAGA_TEST_TEMPORAL_ADDRESS`` when set, else starts
a private PostgreSQL and Temporal dev server in a temporary directory. It runs the scenario of each
shape on an in-process worker and writes ``<shape>.json`` (``WorkflowHistory.to_json()``) and the
manifest of workflow ids. ``--only`` records some shapes and leaves the others' files as they are:
a new path gets its history without re-recording the released ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from eventstore import migrate
from eventstore.keys import MasterKey
from memsaga.bootstrap import MIGRATION_SOURCES, build_activities, build_stores, build_worker
from memsaga.client import approve_extraction, cancel_extraction, extraction_result, reject_extraction
from memsaga.devstack import create_database, start_postgres, start_temporal, stop_service, with_database
from memsaga.settings import Settings
from sagas.memory_extraction.domain import ExtractionRequest
from tests.workflows.newer_histories import NEWER_SCENARIOS, Run
from tests.workflows.support import HISTORIES, SENSITIVE_EPISODE, SagaEnv, closed_port, request

Scenario = Callable[[SagaEnv], Awaitable[dict[str, Run]]]


async def _completed(env: SagaEnv) -> dict[str, Run]:
    return {"completed": await _finished(env, request())}


async def _approved(env: SagaEnv) -> dict[str, Run]:
    return {"approved": await _reviewed(env, approve=True)}


async def _rejected(env: SagaEnv) -> dict[str, Run]:
    return {"rejected": await _reviewed(env, approve=False)}


async def _timed_out(env: SagaEnv) -> dict[str, Run]:
    return {"timed_out": await _finished(env, request(review=True, review_timeout_seconds=0.5))}


async def _failed(env: SagaEnv) -> dict[str, Run]:
    return {"failed": await _finished(env, request(embedder="http", embedder_base_url=_nowhere()))}


async def _cancelled(env: SagaEnv) -> dict[str, Run]:
    handle = await env.start(request(review=True))
    await env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    await cancel_extraction(env.client, handle.workflow_id)
    await _ends_cancelled(env, handle.workflow_id)
    return {"cancelled": (handle.workflow_id, None)}


SCENARIOS: dict[tuple[str, ...], Scenario] = {
    ("completed",): _completed,
    ("approved",): _approved,
    ("rejected",): _rejected,
    ("timed_out",): _timed_out,
    ("failed",): _failed,
    ("cancelled",): _cancelled,
    **NEWER_SCENARIOS,
}
"""What to run for each saved history (several histories can come from one scenario)."""
SHAPES = tuple(shape for shapes in SCENARIOS for shape in shapes)
"""One history per way a saga can end (file ``<shape>.json``)."""
MANIFEST = "workflow_ids.json"
"""``{shape: workflow id}``: the Replayer needs each history's workflow id."""


async def record_histories(env: SagaEnv, out_dir: Path, shapes: Sequence[str] = SHAPES) -> list[Path]:
    """Run the scenarios of ``shapes`` on ``env`` (concurrently) and save each history; the files
    written. The manifest keeps the entries of shapes not recorded now."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [fn for names, fn in SCENARIOS.items() if set(names) & set(shapes)]
    runs: dict[str, Run] = {}
    for found in await asyncio.gather(*(fn(env) for fn in chosen)):
        runs |= {shape: run for shape, run in found.items() if shape in shapes}
    manifest_path = out_dir / MANIFEST
    manifest: dict[str, str] = (
        json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    )
    written = []
    for shape in SHAPES:
        if shape not in runs:
            continue
        workflow_id, run_id = runs[shape]
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        path = out_dir / f"{shape}.json"
        path.write_text(history.to_json(), encoding="utf-8")
        written.append(path)
        manifest[shape] = workflow_id
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written


def _nowhere() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


async def _finished(env: SagaEnv, saga_request: ExtractionRequest) -> Run:
    handle = await env.start(saga_request)
    with contextlib.suppress(WorkflowFailureError):  # the failed shape ends so on purpose
        await extraction_result(env.client, handle.workflow_id)
    return handle.workflow_id, None


async def _reviewed(env: SagaEnv, *, approve: bool) -> Run:
    handle = await env.start(request(SENSITIVE_EPISODE))
    await env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    if approve:
        await approve_extraction(env.client, handle.workflow_id, reviewer="recorder")
    else:
        await reject_extraction(
            env.client, handle.workflow_id, reviewer="recorder", reason="recorded rejection"
        )
    await extraction_result(env.client, handle.workflow_id)
    return handle.workflow_id, None


async def _ends_cancelled(env: SagaEnv, workflow_id: str) -> None:
    try:
        await extraction_result(env.client, workflow_id)
    except WorkflowFailureError:
        return
    raise AssertionError(f"the cancelled saga {workflow_id} completed")


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


async def main(out_dir: Path, shapes: Sequence[str] = SHAPES) -> None:
    """Record ``shapes`` into ``out_dir``, with services from the environment or started here."""
    os.environ.setdefault("MEMSAGA_MASTER_KEY", MasterKey.generate().text())  # the forget saga's keys
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
                for path in await record_histories(env, out_dir, shapes):
                    print(f"wrote {path}")
        finally:
            for service in started:
                stop_service(service)


def _arguments(argv: list[str]) -> tuple[Path, tuple[str, ...]]:
    """``[OUT_DIR] [--only SHAPE,SHAPE...]``: where to write, and which shapes (default: all)."""
    shapes: tuple[str, ...] = SHAPES
    if "--only" in argv:
        at = argv.index("--only")
        shapes = tuple(argv[at + 1].split(","))
        argv = argv[:at] + argv[at + 2 :]
        unknown = set(shapes) - set(SHAPES)
        if unknown:
            raise SystemExit(f"unknown shapes {sorted(unknown)}; known: {', '.join(SHAPES)}")
    return (Path(argv[0]) if argv else HISTORIES), shapes


if __name__ == "__main__":
    asyncio.run(main(*_arguments(sys.argv[1:])))
