"""Failpoints in the saga's activities, with worker processes: one is killed after an append
(or mid-compensation), a second one finishes the saga, and no event is there twice."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from memsaga.client import extraction_result
from memsaga.settings import Settings
from tests.projections.roles import Role
from tests.workflows.support import SagaEnv, request, types

PIPELINE = [
    "ExtractionRequested",
    "EpisodeRecorded",
    "CandidatesExtracted",
    "CandidatesEmbedded",
    "CandidatesDeduplicated",
    "CandidatesReconciled",
]
STORE_HIT = 6
"""``activity.after_append`` hits in order: record, extract, embed, dedup, reconcile, store (6th)."""


@pytest.fixture(scope="module")
def process_env(saga_env: SagaEnv) -> SagaEnv:
    """Stores of the module's database, and a task queue served by worker processes only."""
    queue = f"{saga_env.settings.task_queue}-failpoints"
    settings = saga_env.settings.model_copy(update={"task_queue": queue})
    return SagaEnv(saga_env.client, saga_env.pool, saga_env.store, saga_env.blobs, settings)


def worker(tmp_path: Path, settings: Settings, name: str, **variables: str) -> Role:
    """``memsaga worker`` as a process on ``settings``' services and task queue."""
    environ = {
        "MEMSAGA_DATABASE_URL": settings.require_database_url(),
        "MEMSAGA_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MEMSAGA_TASK_QUEUE": settings.task_queue,
        "MEMSAGA_STATE_DIR": str(settings.state_dir),
        "MEMSAGA_FAILPOINTS": "",
        **variables,
    }
    (tmp_path / name).mkdir()
    return Role(tmp_path / name, environ, "worker")


async def killed(role: Role, timeout: float = 60.0) -> None:
    code = await asyncio.wait_for(asyncio.to_thread(role.proc.wait), timeout)
    assert code == -signal.SIGKILL, f"worker exited {code}:\n{role.output()}"


async def test_a_worker_killed_after_an_append_leaves_the_saga_to_another_with_no_event_twice(
    process_env: SagaEnv, tmp_path: Path
) -> None:
    first = worker(tmp_path, process_env.settings, "first", MEMSAGA_FAILPOINTS="activity.after_append=kill@2")
    second: Role | None = None
    try:
        await first.said("memsaga worker ready")
        # The 2nd hit is extract's: an adapter step, whose lost attempt Temporal notices after the
        # heartbeat timeout (a short step's only after its 60 s start-to-close timeout).
        handle = await process_env.start(request(embedder="hashing", heartbeat_timeout_seconds=2))
        await killed(first)
        assert "failpoint activity.after_append: kill (hit 2)" in first.output()
        assert types(await process_env.events(handle)) == PIPELINE[:3]  # extract's event is in

        second = worker(tmp_path, process_env.settings, "second")
        result = await asyncio.wait_for(extraction_result(process_env.client, handle.workflow_id), 60)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    assert result.outcome == "completed" and len(result.memory_ids) == 3
    events = await process_env.events(handle)
    assert types(events) == [*PIPELINE, *["MemoryCreated"] * 3, "ExtractionCompleted"]
    keys = [e.metadata["saga_event"] for e in events]
    assert len(keys) == len(set(keys))  # extract ran twice, its event is there once


async def test_a_worker_killed_mid_compensation_leaves_it_to_another_each_compensating_event_once(
    process_env: SagaEnv, tmp_path: Path
) -> None:
    # store appends its memories, then fails for good (raise); the first retraction kills the worker.
    spec = f"activity.after_append=raise@{STORE_HIT},compensation.after_first=kill"
    first = worker(
        tmp_path, process_env.settings, "first", MEMSAGA_FAILPOINTS=spec, MEMSAGA_LOG_FORMAT="json"
    )
    second: Role | None = None
    try:
        await first.said("memsaga worker ready")
        handle = await process_env.start(request(embedder="hashing"))
        await killed(first)
        partly = await process_env.events(handle)
        assert types(partly) == [*PIPELINE, *["MemoryCreated"] * 3, "MemoryRetracted"]

        second = worker(tmp_path, process_env.settings, "second")  # retries the retraction in 30 s
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(extraction_result(process_env.client, handle.workflow_id), 90)
    finally:
        first.kill()
        if second is not None:
            second.kill()

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "StepFailedError"
    events = await process_env.events(handle)
    assert types(events) == [
        *PIPELINE,
        *["MemoryCreated"] * 3,
        *["MemoryRetracted"] * 3,
        "ExtractionCompensated",
    ]
    keys = [e.metadata["saga_event"] for e in events]
    assert len(keys) == len(set(keys))
    retracted = {e.payload["compensates_event_id"] for e in events if e.event_type == "MemoryRetracted"}
    assert retracted == {str(e.event_id) for e in events if e.event_type == "MemoryCreated"}
    compensated = events[-1].payload
    assert compensated["failed_step"] == "store" and "FailpointTriggered" in compensated["reason"]

    # MEMSAGA_LOG_FORMAT=json: the first worker logged JSON lines only, the step's failure with its exception.
    records = [json.loads(line) for line in first.err.read_text().splitlines()]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert {r.get("role") for r in records} == {"worker"}
    logged = [r for r in records if "FailpointTriggered" in r.get("exc", "")]
    assert logged and logged[0]["level"] == "WARNING"
    assert any(r["message"].startswith("failpoint compensation.after_first: kill") for r in records)
