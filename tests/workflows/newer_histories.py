"""Scenarios of the saved histories added after the first six (issue 18): the ``ForgetUser``
saga, a retried request, a review decided candidate by candidate, a superseding episode, a
last step and a compensation that fail for good, and a re-extraction with its episode's child.

``record_histories.py`` runs them with the others; each returns ``{shape: (workflow id, run id)}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.memory_extraction_io import (
    Appended,
    CompleteInput,
    RetractMemoriesInput,
    RetractResult,
)
from activities.reextraction import ReextractEpisodeInput, ReextractionActivities
from eventstore import sha256_hex
from memsaga.bootstrap import build_activities
from memsaga.client import (
    approve_extraction,
    extraction_outcome,
    extraction_result,
    reject_extraction,
    retry_extraction,
)
from memsaga.reextraction import reextract, start_reextraction
from sagas.forgetting import ForgetRequest, forget_workflow_id
from sagas.memory_extraction.domain import ExtractionRequest, episode_id_for
from sagas.reextraction import EpisodeOutcome, ReextractionRequest, episode_workflow_id, request_workflow_id
from tests.workflows.support import EPISODE, SENSITIVE_EPISODE, SagaEnv, request
from workflows.forget_user import ForgetUser
from workflows.memory_extraction import MemoryExtraction
from workflows.reextraction import EpisodeReextraction, Reextraction

Run = tuple[str, str | None]
"""A recorded run: its workflow id, and its run id (None: the latest run of that id)."""

SUPERSEDING_EPISODE = "Actually, I moved from Lisbon to Berlin."
"""Said after :data:`~tests.workflows.support.EPISODE`: the Lisbon memory is superseded."""


async def forget(env: SagaEnv, user_id: str) -> tuple[Run, list[str]]:
    """Forget ``user_id`` as ``memsaga forget`` does, on ``env``'s task queue; the run and the
    sagas it cancelled."""
    handle = await env.client.start_workflow(
        ForgetUser.run,
        ForgetRequest(user_id=user_id, requested_by="recorder"),
        id=forget_workflow_id(user_id),
        task_queue=env.settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    result = await handle.result()
    return (handle.id, handle.result_run_id), result.cancelled_workflow_ids


async def _forgotten_while_a_saga_runs(env: SagaEnv) -> dict[str, Run]:
    """Forgetting a user whose saga waits for review: the saga is cancelled and compensates."""
    saga_request = request(review=True)
    saga = await env.start(saga_request)
    await env.wait_status(saga.workflow_id, lambda s: s.waiting_for_review)
    run, cancelled = await forget(env, saga_request.user_id)
    assert cancelled == [saga.workflow_id], cancelled
    try:
        await extraction_result(env.client, saga.workflow_id)
        raise AssertionError("the saga of a forgotten user completed")
    except WorkflowFailureError:
        pass
    return {"forgotten": run, "cancelled_by_forget": (saga.workflow_id, None)}


async def _forgotten_twice(env: SagaEnv) -> dict[str, Run]:
    """Forgetting a user with no running saga, then asking again (it returns at once)."""
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    first, _ = await forget(env, user_id)
    again, _ = await forget(env, user_id)
    assert first[1] != again[1]
    return {"forgotten_idle": first, "forgotten_again": again}


async def _retried(env: SagaEnv) -> dict[str, Run]:
    """``memsaga retry``: a request by hash fails (its text was not stored), is fixed, retried."""
    data = EPISODE.encode("utf-8")
    by_hash = ExtractionRequest.model_validate(
        {**request().model_dump(), "text": None, "text_sha256": sha256_hex(data)}
    )
    first = await env.start(by_hash)
    assert (await extraction_outcome(env.client, first.workflow_id)).outcome != "completed"
    await env.blobs.put(data)
    again = await retry_extraction(env.client, first.workflow_id, settings=env.settings)
    assert (await extraction_result(env.client, again.workflow_id)).outcome == "completed"
    return {"failed_before_retry": (first.workflow_id, None), "retried": (again.workflow_id, None)}


async def _partly_approved(env: SagaEnv) -> dict[str, Run]:
    """A review decided candidate by candidate (``approve/reject --only``): one kept, one not."""
    handle = await env.start(request(SENSITIVE_EPISODE, review=True))
    status = await env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    first, second = (item.candidate_id for item in status.review)
    await approve_extraction(env.client, handle.workflow_id, reviewer="recorder", candidate_ids=[first])
    await reject_extraction(
        env.client, handle.workflow_id, reviewer="recorder", reason="not this one", candidate_ids=[second]
    )
    result = await extraction_result(env.client, handle.workflow_id)
    assert result.outcome == "completed" and len(result.memory_ids) == 1, result
    return {"partly_approved": (handle.workflow_id, None)}


async def _superseded(env: SagaEnv) -> dict[str, Run]:
    """A second episode that supersedes a memory of the first (reconciliation ends it)."""
    first = request()
    await extraction_result(env.client, (await env.start(first)).workflow_id)
    handle = await env.start(request(SUPERSEDING_EPISODE, user_id=first.user_id))
    await extraction_result(env.client, handle.workflow_id)
    status = await env.wait_status(handle.workflow_id, lambda s: s.outcome != "running")
    assert status.superseding, status
    return {"superseded": (handle.workflow_id, None)}


async def _reextracted(env: SagaEnv) -> dict[str, Run]:
    """``memsaga reextract --user U``: one completed episode run again through the rules with the
    recorder's embedder (its memories found again, so unchanged), and that episode's child."""
    first = request()
    saga = await env.start(first)
    await extraction_result(env.client, saga.workflow_id)
    request_id = f"history-{uuid.uuid4().hex[:8]}"
    done = await reextract(
        env.client,
        ReextractionRequest(
            request_id=request_id, user_id=first.user_id, extractor="rules", embedder=env.settings.embedder,
            max_concurrency=1,
        ),
        settings=env.settings,
        poll_seconds=0.2,
    )  # fmt: skip
    assert (done.total, done.done, done.failed) == (1, 1, []), done
    child = episode_workflow_id(request_id, episode_id_for(saga.workflow_id))
    return {"reextracted": (request_workflow_id(request_id), None), "episode_reextracted": (child, None)}


async def _reembedded(env: SagaEnv) -> dict[str, Run]:
    """``memsaga reextract --user U --embedder hashing``, by code that records
    ``ReextractionCompleted`` at the end (the patch ``record-completion``): search switches on it."""
    first = request()
    saga = await env.start(first)
    await extraction_result(env.client, saga.workflow_id)
    request_id = f"history-{uuid.uuid4().hex[:8]}"
    done = await reextract(
        env.client,
        ReextractionRequest(
            request_id=request_id, user_id=first.user_id, extractor="rules", embedder="hashing",
            max_concurrency=1,
        ),
        settings=env.settings,
        poll_seconds=0.2,
    )  # fmt: skip
    assert (done.total, done.done, done.failed) == (1, 1, []), done
    return {"reembedded": (request_workflow_id(request_id), None)}


@activity.defn(name="reextraction.reextract_episode")
async def slow_reextract_episode(input: ReextractEpisodeInput) -> EpisodeOutcome:
    """An episode whose model never answers (heartbeating meanwhile): a forget cancels it."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.2)


async def _reextraction_forgotten(env: SagaEnv) -> dict[str, Run]:
    """A forget while an episode is re-extracted: the episode saga is cancelled (its activity
    waited for), and the request counts it as skipped and completes."""
    first = request()
    saga = await env.start(first)
    await extraction_result(env.client, saga.workflow_id)
    base = build_activities(env.pool, env.settings)
    real = ReextractionActivities(base.store, base.blobs, base.index, base.extractors, base.embedders).all()
    kept = [a for a in real if getattr(a, "__name__", "") != "reextract_episode"]
    settings = env.settings.model_copy(
        update={"task_queue": f"{env.settings.task_queue}-{uuid.uuid4().hex[:6]}"}
    )
    request_id = f"history-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=settings.task_queue,
        workflows=[Reextraction, EpisodeReextraction],
        activities=[*kept, slow_reextract_episode],
    ):
        handle = await start_reextraction(
            env.client,
            ReextractionRequest(
                request_id=request_id, user_id=first.user_id, extractor="rules", embedder="hashing"
            ),
            settings=settings,
        )
        child = episode_workflow_id(request_id, episode_id_for(saga.workflow_id))
        for _ in range(300):  # until its activity runs (and visibility lists it)
            with contextlib.suppress(RPCError):
                described = await env.client.get_workflow_handle(child).describe()
                if described.raw_description.pending_activities:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        _, cancelled = await forget(env, first.user_id)
        assert child in cancelled, cancelled
        done = await handle.result()
    assert (done.done, done.skipped_forgotten, done.failed) == (1, 1, []), done
    return {"reextraction_forgotten": (handle.id, None), "episode_cancelled_by_forget": (child, None)}


@activity.defn(name="memory_extraction.complete_extraction")
async def broken_complete_extraction(input: CompleteInput) -> Appended:
    raise ApplicationError("the completion step is broken", type="Broken", non_retryable=True)


@activity.defn(name="memory_extraction.retract_memories")
async def broken_retract_memories(input: RetractMemoriesInput) -> RetractResult:
    raise ApplicationError("the retraction is broken", type="Broken", non_retryable=True)


async def _broken_run(env: SagaEnv, *fakes: Callable[..., Any]) -> tuple[str, str | None]:
    """A saga on a worker (and task queue) of its own where ``fakes`` replace the real activities
    of their names, run until it fails; its workflow id and the failure's type."""
    names = {getattr(fake, "__name__", "").removeprefix("broken_") for fake in fakes}
    real = build_activities(env.pool, env.settings).all()
    kept = [a for a in real if getattr(a, "__name__", "") not in names]
    settings = env.settings.model_copy(
        update={"task_queue": f"{env.settings.task_queue}-{uuid.uuid4().hex[:6]}"}
    )
    broken = SagaEnv(env.client, env.pool, env.store, env.blobs, settings)
    async with Worker(
        env.client, task_queue=settings.task_queue, workflows=[MemoryExtraction], activities=[*kept, *fakes]
    ):
        handle = await broken.start(request())
        try:
            await extraction_result(env.client, handle.workflow_id)
        except WorkflowFailureError as exc:
            assert isinstance(exc.cause, ApplicationError), exc.cause
            return handle.workflow_id, exc.cause.type
    raise AssertionError("a saga with broken activities completed")


async def _complete_failed(env: SagaEnv) -> dict[str, Run]:
    """The last step fails for good after the store: the memories are retracted, then the saga."""
    workflow_id, error = await _broken_run(env, broken_complete_extraction)
    assert error == "StepFailedError", error
    return {"complete_failed": (workflow_id, None)}


async def _compensation_failed(env: SagaEnv) -> dict[str, Run]:
    """A compensation fails for good too: ``CompensationFailed`` is recorded and the saga fails
    (the real activities never fail so: a compensation retries even a permanent error)."""
    workflow_id, error = await _broken_run(env, broken_complete_extraction, broken_retract_memories)
    assert error == "CompensationFailedError", error
    return {"compensation_failed": (workflow_id, None)}


NEWER_SCENARIOS: dict[tuple[str, ...], Callable[[SagaEnv], Awaitable[dict[str, Run]]]] = {
    ("forgotten", "cancelled_by_forget"): _forgotten_while_a_saga_runs,
    ("forgotten_idle", "forgotten_again"): _forgotten_twice,
    ("failed_before_retry", "retried"): _retried,
    ("partly_approved",): _partly_approved,
    ("superseded",): _superseded,
    ("complete_failed",): _complete_failed,
    ("compensation_failed",): _compensation_failed,
    ("reextracted", "episode_reextracted"): _reextracted,
    ("reembedded",): _reembedded,
    ("reextraction_forgotten", "episode_cancelled_by_forget"): _reextraction_forgotten,
}
