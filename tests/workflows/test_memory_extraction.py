"""The MemoryExtraction saga against the real Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities.memory_extraction_io import Appended, CompleteInput, RetractMemoriesInput, RetractResult
from activities.memory_index import StoreMemoryIndex
from eventstore import RecordedEvent
from memsaga.bootstrap import build_activities
from memsaga.client import (
    SagaFinished,
    approve_extraction,
    cancel_extraction,
    extraction_result,
    extraction_status,
    reject_extraction,
    start_extraction,
)
from memsaga.devstack.process import find_binary
from memsaga.devstack.temporal import PACKAGE as TEMPORAL_PACKAGE
from sagas.memory_extraction.domain import ExtractionRequest, InvalidExtractionRequest, episode_id_for
from sagas.memory_extraction.embedders import bytes_to_vector
from sagas.memory_extraction.events import episode_stream
from tests.workflows.support import (
    SENSITIVE_EPISODE,
    SagaEnv,
    closed_port,
    eventually,
    request,
    types,
)
from workflows.memory_extraction import CORRELATION_ID, USER_ID, MemoryExtraction

PIPELINE = [
    "ExtractionRequested",
    "EpisodeRecorded",
    "CandidatesExtracted",
    "CandidatesEmbedded",
    "CandidatesDeduplicated",
    "CandidatesReconciled",
]
EPISODE_MEMORIES = {"User lives in Lisbon", "User's sister Ana is a nurse", "User loves hiking"}


def of_type(events: list[RecordedEvent], event_type: str) -> list[RecordedEvent]:
    return [e for e in events if e.event_type == event_type]


def only(events: list[RecordedEvent], event_type: str) -> RecordedEvent:
    found = of_type(events, event_type)
    assert len(found) == 1, f"expected one {event_type}, got {types(events)}"
    return found[0]


async def failure_of(env: SagaEnv, workflow_id: str) -> BaseException:
    with pytest.raises(WorkflowFailureError) as caught:
        await extraction_result(env.client, workflow_id)
    assert caught.value.cause is not None
    return caught.value.cause


def assert_one_tree(events: list[RecordedEvent], workflow_id: str) -> None:
    """Every event is caused by the request (the workflow id) or by another event of the saga."""
    ids = {str(e.event_id) for e in events}
    roots = [e for e in events if e.causation_id == workflow_id]
    assert [e.event_type for e in roots] == ["ExtractionRequested"]
    assert all(e.causation_id in ids for e in events if e not in roots)
    assert {e.correlation_id for e in events} == {events[0].correlation_id}


# --- completion ---------------------------------------------------------------------------------


async def test_happy_path_stores_the_expected_memories(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request())
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert (result.outcome, result.candidates, result.duplicates, len(result.memory_ids)) == (
        "completed",
        3,
        0,
        3,
    )
    events = await saga_env.events(handle)
    assert types(events) == [
        *PIPELINE,
        "MemoryCreated",
        "MemoryCreated",
        "MemoryCreated",
        "ExtractionCompleted",
    ]
    created = of_type(events, "MemoryCreated")
    assert {e.payload["text"] for e in created} == EPISODE_MEMORIES
    assert {e.payload["memory_id"] for e in created} == set(result.memory_ids)
    assert all(e.stream_id == f"memory-{e.payload['memory_id']}" and e.version == 1 for e in created)
    for event in created:  # vectors live in the blob store; events carry hash and dimension
        vector = bytes_to_vector(
            await saga_env.blobs.get(event.payload["vector_sha256"], user_id=event.user_id)
        )
        assert len(vector) == event.payload["dimension"] == 256
    completed = only(events, "ExtractionCompleted").payload
    assert (completed["candidates"], completed["memories_created"]) == (3, 3)
    assert {e.user_id for e in events} == {handle.user_id}
    assert_one_tree(events, handle.workflow_id)
    tree = await saga_env.store.read_causation(events[0].event_id)
    assert [e.event_id for e in tree] == [e.event_id for e in events]

    status = await extraction_status(saga_env.client, handle.workflow_id)
    assert (status.outcome, status.step, status.memories_created) == ("completed", "done", 3)
    described = await saga_env.client.get_workflow_handle(handle.workflow_id).describe()
    assert (
        described.typed_search_attributes.get(CORRELATION_ID) == handle.correlation_id == handle.workflow_id
    )
    assert described.typed_search_attributes.get(USER_ID) == handle.user_id
    assert handle.url.endswith(f"/namespaces/default/workflows/{handle.workflow_id}/{handle.run_id}")


async def test_a_second_episode_with_the_same_facts_creates_no_duplicates(saga_env: SagaEnv) -> None:
    first = await saga_env.start(request())
    user = first.user_id
    await extraction_result(saga_env.client, first.workflow_id)
    second = await saga_env.start(
        request("I love hiking. I live in Lisbon. I work as a baker.", user_id=user)
    )
    result = await extraction_result(saga_env.client, second.workflow_id)

    assert (result.candidates, result.duplicates, len(result.memory_ids)) == (3, 2, 1)
    dedup = only(await saga_env.events(second), "CandidatesDeduplicated").payload
    first_memories = {e.payload["memory_id"] for e in of_type(await saga_env.events(first), "MemoryCreated")}
    assert {s["existing_memory_id"] for s in dedup["skipped"]} <= first_memories
    assert len(dedup["kept"]) == 1


async def test_long_text_travels_by_hash(saga_env: SagaEnv) -> None:
    long_text = "I love hiking. " + "We talked about the weather for a while. " * 600  # ~24 KiB
    handle = await saga_env.start(request(long_text))
    result = await extraction_result(saga_env.client, handle.workflow_id)

    recorded_event = only(await saga_env.events(handle), "EpisodeRecorded")
    recorded = recorded_event.payload
    assert recorded["text"] is None and recorded["text_bytes"] == len(long_text.encode())
    sealed = await saga_env.blobs.get(recorded["text_sha256"], user_id=recorded_event.user_id)
    assert sealed.decode() == long_text
    history = await saga_env.client.get_workflow_handle(handle.workflow_id).fetch_history()
    assert "weather" not in history.to_json()  # the episode never entered Temporal's history
    assert result.memory_ids and result.outcome == "completed"


# --- review -------------------------------------------------------------------------------------


async def test_sensitive_candidates_wait_for_approval(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(SENSITIVE_EPISODE))
    status = await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    assert status.step == "review" and status.candidates == 2
    assert any("health" in reason for reason in status.review_reasons)

    await approve_extraction(saga_env.client, handle.workflow_id, reviewer="ana", note="fine")
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert result.outcome == "completed" and len(result.memory_ids) == 2
    events = await saga_env.events(handle)
    assert types(events)[6:9] == ["ReviewRequested", "ReviewApproved", "MemoryCreated"]
    assert only(events, "ReviewApproved").payload["reviewer"] == "ana"
    sensitive = {e.payload["text"]: e.payload["sensitive"] for e in of_type(events, "MemoryCreated")}
    assert sensitive == {"User is allergic to peanuts": True, "User works as a baker": False}
    assert_one_tree(events, handle.workflow_id)


async def test_each_candidate_is_decided_on_its_own_and_only_the_approved_are_stored(
    saga_env: SagaEnv,
) -> None:
    handle = await saga_env.start(request(review=True))
    status = await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    items = {item.candidate_id: item for item in status.review}
    assert len(items) == 3 and {i.decision for i in items.values()} == {"pending"}
    assert {i.reason for i in items.values()} == {"review requested by the client"}
    first, second, third = list(items)

    await reject_extraction(saga_env.client, handle.workflow_id, reviewer="bo", candidate_ids=[first])
    status = await saga_env.wait_status(
        handle.workflow_id, lambda s: any(i.decision == "rejected" for i in s.review)
    )
    assert status.waiting_for_review  # the others are still undecided
    await approve_extraction(saga_env.client, handle.workflow_id, reviewer="ana", candidate_ids=[second])
    await approve_extraction(saga_env.client, handle.workflow_id, reviewer="cy")  # the rest: just third
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert result.outcome == "completed" and len(result.memory_ids) == 2
    events = await saga_env.events(handle)
    decisions = [
        (e.event_type, e.payload["reviewer"], e.payload["candidate_ids"])
        for e in events
        if e.event_type.startswith("ReviewA") or e.event_type == "ReviewRejected"
    ]
    assert decisions == [
        ("ReviewRejected", "bo", [first]),
        ("ReviewApproved", "ana", [second]),
        ("ReviewApproved", "cy", [third]),
    ]
    created = only(await saga_env.events(handle), "ExtractionCompleted").payload["memory_ids"]
    texts = {e.payload["text"] for e in of_type(events, "MemoryCreated")}
    assert len(created) == 2 and len(texts) == 2 and texts < EPISODE_MEMORIES
    final = await extraction_status(saga_env.client, handle.workflow_id)
    assert [i.decision for i in final.review] == ["rejected", "approved", "approved"]


async def test_rejecting_every_candidate_one_by_one_rejects_the_saga(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(SENSITIVE_EPISODE, review=True))
    status = await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    ids = [item.candidate_id for item in status.review]

    for candidate_id in ids:
        await reject_extraction(saga_env.client, handle.workflow_id, candidate_ids=[candidate_id])
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert result.outcome == "rejected" and result.memory_ids == []
    assert "every candidate was rejected" in (result.reason or "")
    assert "ExtractionCompensated" in types(await saga_env.events(handle))


async def test_reject_compensates(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(SENSITIVE_EPISODE))
    await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    await reject_extraction(saga_env.client, handle.workflow_id, reviewer="bo", reason="not about the user")
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert result.outcome == "rejected" and result.memory_ids == []
    assert "not about the user" in (result.reason or "")
    events = await saga_env.events(handle)
    assert types(events) == [*PIPELINE, "ReviewRequested", "ReviewRejected", "ExtractionCompensated"]
    compensated = only(events, "ExtractionCompensated")
    assert compensated.payload["failed_step"] == "review"
    assert compensated.payload["compensates_event_ids"] == [str(events[0].event_id)]
    assert compensated.causation_id == str(only(events, "ReviewRejected").event_id)
    status = await extraction_status(saga_env.client, handle.workflow_id)
    assert (status.outcome, status.step) == ("rejected", "compensated")


async def test_review_timeout_rejects_and_compensates(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(review=True, review_timeout_seconds=1.0))
    result = await extraction_result(saga_env.client, handle.workflow_id)

    assert result.outcome == "rejected" and "timed out" in (result.reason or "")
    events = await saga_env.events(handle)
    assert types(events) == [*PIPELINE, "ReviewRequested", "ReviewRejected", "ExtractionCompensated"]
    assert only(events, "ReviewRejected").payload["timed_out"] is True
    assert only(events, "ReviewRequested").payload["reasons"] == ["review requested by the client"]


# --- cancellation -------------------------------------------------------------------------------


async def test_cancel_while_waiting_for_review_compensates(saga_env: SagaEnv) -> None:
    handle = await saga_env.start(request(review=True))
    await saga_env.wait_status(handle.workflow_id, lambda s: s.waiting_for_review)
    await cancel_extraction(saga_env.client, handle.workflow_id, reason="user left")

    assert isinstance(await failure_of(saga_env, handle.workflow_id), CancelledError)
    described = await saga_env.client.get_workflow_handle(handle.workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.CANCELED
    events = await saga_env.events(handle)
    assert types(events) == [*PIPELINE, "ReviewRequested", "ExtractionCompensated"]
    payload = only(events, "ExtractionCompensated").payload
    assert (payload["reason"], payload["failed_step"]) == ("cancelled: user left", "review")
    status = await extraction_status(saga_env.client, handle.workflow_id)
    assert (status.outcome, status.step, status.reason) == (
        "cancelled",
        "compensated",
        "cancelled: user left",
    )


@asynccontextmanager
async def hanging_http_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A local HTTP server that accepts requests and never answers: ``(base url, got a request)``."""
    got_request, release = asyncio.Event(), asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got_request.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", got_request
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_cancel_during_an_activity_compensates(saga_env: SagaEnv) -> None:
    async with hanging_http_server() as (url, got_request):
        slow = request(extractor="http", extractor_base_url=url, heartbeat_timeout_seconds=2.0)
        handle = await saga_env.start(slow)
        await asyncio.wait_for(got_request.wait(), 30)
        await cancel_extraction(saga_env.client, handle.workflow_id)
        # The activity learns of the cancel through its heartbeat: ActivityError(CancelledError).
        assert isinstance(await failure_of(saga_env, handle.workflow_id), CancelledError)

    events = await saga_env.events(handle)
    assert types(events) == ["ExtractionRequested", "EpisodeRecorded", "ExtractionCompensated"]
    payload = only(events, "ExtractionCompensated").payload
    assert (payload["reason"], payload["failed_step"]) == ("cancelled: cancelled by user", "extract")


async def test_cancelling_a_finished_saga_says_it_is_finished_and_points_to_retract(
    saga_env: SagaEnv,
) -> None:
    handle = await saga_env.start(request())
    await extraction_result(saga_env.client, handle.workflow_id)

    with pytest.raises(SagaFinished, match="memsaga retract MEMORY_ID") as caught:
        await cancel_extraction(saga_env.client, handle.workflow_id)
    assert caught.value.status == "completed"
    assert "ExtractionCompensated" not in types(await saga_env.events(handle))


# --- permanent failures -------------------------------------------------------------------------


async def test_a_permanently_failing_embedder_compensates(saga_env: SagaEnv) -> None:
    broken = request(embedder="http", embedder_base_url=f"http://127.0.0.1:{closed_port()}/v1")
    handle = await saga_env.start(broken)

    cause = await failure_of(saga_env, handle.workflow_id)
    assert isinstance(cause, ApplicationError) and cause.type == "StepFailedError"
    assert "cannot connect" in str(cause)
    events = await saga_env.events(handle)
    assert types(events) == [*PIPELINE[:3], "ExtractionCompensated"]
    payload = only(events, "ExtractionCompensated").payload
    assert payload["failed_step"] == "embed" and payload["retracted_memory_ids"] == []
    assert await StoreMemoryIndex(saga_env.store).live_memories(handle.user_id, ["x"]) == {}
    history = await saga_env.client.get_workflow_handle(handle.workflow_id).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id].endswith(
            "embed_candidates"
        )
    ]
    assert attempts == [2]  # the embedder was retried until its retries ran out


@activity.defn(name="memory_extraction.complete_extraction")
async def broken_complete_extraction(input: CompleteInput) -> Appended:
    raise ApplicationError("the completion step is broken", type="Broken", non_retryable=True)


@activity.defn(name="memory_extraction.retract_memories")
async def broken_retract_memories(input: RetractMemoriesInput) -> RetractResult:
    raise ApplicationError("the retraction is broken", type="Broken", non_retryable=True)


@asynccontextmanager
async def worker_with(saga_env: SagaEnv, *fakes: Callable[..., object]) -> AsyncIterator[SagaEnv]:
    """Another worker on its own task queue, with ``fakes`` registered under the real activity names."""
    replaced = {getattr(fake, "__name__", "").removeprefix("broken_") for fake in fakes}
    real = build_activities(saga_env.pool, saga_env.settings)
    kept = [a for a in real.all() if getattr(a, "__name__", "") not in replaced]
    queue = f"{saga_env.settings.task_queue}-fake-{uuid.uuid4().hex[:6]}"
    settings = saga_env.settings.model_copy(update={"task_queue": queue})
    async with Worker(
        saga_env.client, task_queue=queue, workflows=[MemoryExtraction], activities=[*kept, *fakes]
    ):
        yield SagaEnv(saga_env.client, saga_env.pool, saga_env.store, saga_env.blobs, settings)


async def test_a_failure_after_store_retracts_every_created_memory(saga_env: SagaEnv) -> None:
    async with worker_with(saga_env, broken_complete_extraction) as env:
        handle = await env.start(request())
        cause = await failure_of(env, handle.workflow_id)

    assert isinstance(cause, ApplicationError) and cause.type == "StepFailedError"
    events = await saga_env.events(handle)
    assert types(events) == [
        *PIPELINE,
        *["MemoryCreated"] * 3,
        *["MemoryRetracted"] * 3,
        "ExtractionCompensated",
    ]
    created = {str(e.event_id): e for e in of_type(events, "MemoryCreated")}
    retracted = of_type(events, "MemoryRetracted")
    assert {e.payload["compensates_event_id"] for e in retracted} == set(created)
    assert all(e.stream_id == created[e.payload["compensates_event_id"]].stream_id for e in retracted)
    payload = only(events, "ExtractionCompensated").payload
    assert payload["failed_step"] == "complete"
    assert payload["compensates_event_ids"] == [str(events[0].event_id), *created]
    assert set(payload["retracted_memory_ids"]) == {e.payload["memory_id"] for e in created.values()}
    hashes = [e.payload["content_hash"] for e in created.values()]
    assert await StoreMemoryIndex(saga_env.store).live_memories(handle.user_id, hashes) == {}


async def test_a_failing_compensation_is_recorded_and_fails_the_saga(saga_env: SagaEnv) -> None:
    async with worker_with(saga_env, broken_complete_extraction, broken_retract_memories) as env:
        handle = await env.start(request())
        cause = await failure_of(env, handle.workflow_id)
        status = await extraction_status(env.client, handle.workflow_id)

    assert isinstance(cause, ApplicationError) and cause.type == "CompensationFailedError"
    assert status.outcome == "compensation_failed"
    events = await saga_env.events(handle)
    assert types(events) == [*PIPELINE, *["MemoryCreated"] * 3, "CompensationFailed"]
    failed = only(events, "CompensationFailed")
    assert failed.payload["step"] == "store" and "retraction is broken" in failed.payload["error"]
    assert failed.stream_id == episode_stream(episode_id_for(handle.workflow_id))


# --- starting -----------------------------------------------------------------------------------


async def test_starting_twice_with_the_same_id_starts_one_saga(saga_env: SagaEnv) -> None:
    key = f"once-{uuid.uuid4().hex[:8]}"
    first = await saga_env.start(request(review=True), key=key)
    again = await saga_env.start(request(review=True), key=key)
    assert (
        (again.workflow_id, again.run_id)
        == (first.workflow_id, first.run_id)
        == (f"extract-{key}", first.run_id)
    )

    await saga_env.wait_status(first.workflow_id, lambda s: s.waiting_for_review)
    await approve_extraction(saga_env.client, first.workflow_id)
    await extraction_result(saga_env.client, first.workflow_id)
    after_close = await saga_env.start(request(), key=key)

    assert after_close.run_id == first.run_id
    runs = [w.run_id async for w in saga_env.client.list_workflows(f'WorkflowId="{first.workflow_id}"')]
    assert runs == [first.run_id]
    assert types(await saga_env.events(first)).count("ExtractionRequested") == 1


async def test_search_attributes_find_every_run_of_a_correlation_id(saga_env: SagaEnv) -> None:
    correlation = f"corr-{uuid.uuid4().hex[:8]}"
    started = [
        await saga_env.start(request().model_copy(update={"correlation_id": correlation})) for _ in range(2)
    ]
    for handle in started:
        await extraction_result(saga_env.client, handle.workflow_id)

    async def listed() -> set[str] | None:
        found = {w.id async for w in saga_env.client.list_workflows(f'CorrelationId="{correlation}"')}
        return found if len(found) == 2 else None

    assert await eventually(listed, 15, "visibility") == {h.workflow_id for h in started}
    assert {h.correlation_id for h in started} == {correlation}
    assert {e.correlation_id for h in started for e in await saga_env.events(h)} == {correlation}


async def test_temporal_cli_starts_a_saga_with_the_documented_json(saga_env: SagaEnv) -> None:
    workflow_id = f"extract-cli-{uuid.uuid4().hex[:8]}"
    document = {"user_id": f"user-{uuid.uuid4().hex[:6]}", "text": "I love hiking.", "source": "chat"}
    temporal = str(find_binary("temporal", TEMPORAL_PACKAGE))
    options = {
        "--address": saga_env.settings.require_temporal_address(),
        "--task-queue": saga_env.settings.task_queue,
        "--type": "MemoryExtraction",
        "--workflow-id": workflow_id,
        "--input": json.dumps(document),
    }
    command = [temporal, "workflow", "start", *(part for pair in options.items() for part in pair)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)

    result = await extraction_result(saga_env.client, workflow_id)
    assert result.outcome == "completed" and len(result.memory_ids) == 1
    described = await saga_env.client.get_workflow_handle(workflow_id).describe()
    assert described.typed_search_attributes.get(CORRELATION_ID) == workflow_id  # upserted by the workflow
    assert described.typed_search_attributes.get(USER_ID) == document["user_id"]


async def test_an_invalid_request_is_refused(saga_env: SagaEnv) -> None:
    with pytest.raises(InvalidExtractionRequest, match="exactly one of text"):
        await start_extraction(saga_env.client, ExtractionRequest(user_id="u"), settings=saga_env.settings)
    # Started around the client, the workflow fails it at once (no retry can fix it).
    workflow_id = f"extract-bad-{uuid.uuid4().hex[:8]}"
    await saga_env.client.start_workflow(
        MemoryExtraction.run,
        ExtractionRequest(user_id="u", text="x", text_sha256="0" * 64),
        id=workflow_id,
        task_queue=saga_env.settings.task_queue,
    )
    cause = await failure_of(saga_env, workflow_id)
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidExtractionRequest"
    assert await saga_env.store.read_correlation(workflow_id) == []
