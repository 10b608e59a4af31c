"""Nothing disappears: a finished saga is described without a worker, and a request that failed
before its first event still leaves its request and why in the event store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from memsaga.bootstrap import build_activities, build_worker
from memsaga.client import ExtractionFailed, extraction_outcome, extraction_result, extraction_status
from projections import EXTRACTIONS
from projections.extractions import get_extraction
from projections.rebuild import rebuild
from sagas.memory_extraction.domain import ExtractionRequest
from tests.workflows.support import EPISODE, SagaEnv, request, types


@asynccontextmanager
async def own_worker(saga_env: SagaEnv) -> AsyncIterator[SagaEnv]:
    """A worker on a task queue of its own, stopped on leaving: afterwards nobody polls it."""
    settings = saga_env.settings.model_copy(update={"task_queue": f"memsaga-alone-{uuid.uuid4().hex[:10]}"})
    env = SagaEnv(saga_env.client, saga_env.pool, saga_env.store, saga_env.blobs, settings)
    async with build_worker(env.client, build_activities(env.pool, settings), task_queue=settings.task_queue):
        yield env


def memsaga_status(env: SagaEnv, workflow_id: str) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    variables |= {
        "MEMSAGA_TEMPORAL_ADDRESS": env.settings.require_temporal_address(),
        "MEMSAGA_TASK_QUEUE": env.settings.task_queue,
        "MEMSAGA_STATE_DIR": str(env.settings.state_dir),
        "MEMSAGA_DATABASE_URL": env.settings.require_database_url(),  # to open the sealed payloads
        "MEMSAGA_MASTER_KEY": os.environ["MEMSAGA_MASTER_KEY"],
    }
    argv = [sys.executable, "-m", "memsaga", "status", workflow_id, "--json"]
    return subprocess.run(argv, env=variables, capture_output=True, text=True, timeout=60)


async def test_status_of_a_completed_saga_needs_no_worker(saga_env: SagaEnv) -> None:
    async with own_worker(saga_env) as env:
        handle = await env.start(request(EPISODE))
        result = await extraction_result(env.client, handle.workflow_id)
    # the worker is gone: a query would fail with "no poller seen for task queue"

    status = await extraction_status(env.client, handle.workflow_id)

    assert status.outcome == "completed" and status.step == "done"
    assert status.memory_ids == result.memory_ids and status.memories_created == len(result.memory_ids) == 3
    assert status.episode_id == result.episode_id and status.correlation_id == handle.correlation_id
    shown = memsaga_status(env, handle.workflow_id)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["memory_ids"] == result.memory_ids


async def test_a_request_that_failed_at_record_leaves_its_request_and_reason(saga_env: SagaEnv) -> None:
    missing = ExtractionRequest.model_validate(
        {**request().model_dump(), "text": None, "text_sha256": "0" * 64}  # a blob never stored
    )
    async with own_worker(saga_env) as env:
        handle = await env.start(missing)
        outcome = await extraction_outcome(env.client, handle.workflow_id)
    assert isinstance(outcome, ExtractionFailed)

    events = await env.events(handle)
    assert types(events) == ["ExtractionRequested", "ExtractionCompensated"]
    assert events[1].payload["failed_step"] == "record" and "BlobNotFound" in events[1].payload["reason"]
    status = await extraction_status(env.client, handle.workflow_id)
    assert (status.outcome, status.failed_step, status.step) == ("failed", "record", "compensated")
    assert status.reason is not None and "BlobNotFound" in status.reason

    await rebuild(env.pool, env.store, EXTRACTIONS)  # what `memsaga extractions` lists
    listed = await get_extraction(env.pool, handle.correlation_id)
    assert listed is not None and (listed.status, listed.failed_step) == ("compensated", "record")
    assert listed.reason is not None and "BlobNotFound" in listed.reason
