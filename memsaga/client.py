"""Start and steer memory-extraction sagas from Python.

Example::

    from memsaga.client import approve_extraction, connect, extraction_result, start_extraction
    from memsaga.settings import Settings
    from sagas.memory_extraction.domain import ExtractionOptions, ExtractionRequest

    settings = Settings()
    client = await connect(settings)
    request = ExtractionRequest(user_id="u-1", text="I'm allergic to peanuts.", options=ExtractionOptions())
    handle = await start_extraction(client, request, workflow_id="extract-chat-42", settings=settings)
    print(handle.url)                                   # the run in the Temporal UI
    await approve_extraction(client, handle.workflow_id, reviewer="ana")   # sensitive: it waits
    print(await extraction_result(client, handle.workflow_id))

Recall (search) is :class:`memsaga.search.Recall`, importable from here too; see docs/search.md.
A user's memories at a point in time (``query_memories(pool, user, as_of=..., valid_at=...)``)
and one memory's history (``memory_history(store, memory_id)``) too; see docs/memories.md.
Re-extraction of stored episodes with other adapters (``reextraction_request``, ``reextract``,
``start_reextraction``, ``reextraction_progress``): see docs/evolution.md.

Starting twice with the same workflow id never starts a second saga: a running saga is
reused (``USE_EXISTING``), and a closed one is not run again (``REJECT_DUPLICATE``,
because the saga's event ids derive from its workflow id); the answer is then the request's
newest run. :func:`retry_extraction` runs a failed request again as ``<workflow id>-r2``, ….
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Sequence
from typing import Literal

import asyncpg
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.memory_extraction_io import (
    DecideReviewInput,
    DeduplicateResult,
    ExtractResult,
    ReconcileResult,
    RequestReviewInput,
)
from eventstore import BlobStore, EventStore
from memsaga.bootstrap import build_stores, create_pool
from memsaga.errors import MemsagaError, NotFound
from memsaga.history import MemoryHistory as MemoryHistory
from memsaga.history import memory_history as memory_history
from memsaga.payload_codec import KeyAccess, SealingCodec
from memsaga.reextraction import InvalidReextraction as InvalidReextraction
from memsaga.reextraction import ReextractionFailed as ReextractionFailed
from memsaga.reextraction import reextract as reextract
from memsaga.reextraction import reextraction_progress as reextraction_progress
from memsaga.reextraction import reextraction_request as reextraction_request
from memsaga.reextraction import start_reextraction as start_reextraction
from memsaga.retraction import MemoryNotFound as MemoryNotFound
from memsaga.retraction import Retraction as Retraction
from memsaga.retraction import retract_memory as retract_memory
from memsaga.search import InvalidSearch as InvalidSearch
from memsaga.search import NotYetApplied as NotYetApplied
from memsaga.search import Recall as Recall
from memsaga.search import SearchHit as SearchHit
from memsaga.search import SearchResult as SearchResult
from memsaga.settings import Settings
from memsaga.trace import workflow_url as workflow_url
from projections.memories import InvalidMemoryQuery as InvalidMemoryQuery
from projections.memories import Memory as Memory
from projections.memories import list_memories as list_memories
from projections.memories import query_memories as query_memories
from sagas.compensation import CompensationFailedError, StepFailedError, describe_failure
from sagas.memory_extraction.domain import (
    COMPLETE,
    DEDUP,
    EMBED,
    EXTRACT,
    INLINE_TEXT_LIMIT,
    RECONCILE,
    RECORD,
    REVIEW,
    STORE,
    CandidateSummary,
    ExtractionOptions,
    ExtractionRequest,
    ExtractionResult,
    ExtractionStatus,
    InvalidExtractionRequest,
    ReviewDecision,
    ReviewItem,
    StepRetry,
    episode_id_for,
    request_problems,
)
from sagas.memory_extraction.events import CandidatesExtracted, episode_stream
from sagas.memory_extraction.identifiers import identifier_problems
from workflows.memory_extraction import CORRELATION_ID, USER_ID, MemoryExtraction

WORKFLOW_ID_PREFIX = "extract-"


class ExtractionHandle(BaseModel):
    """A started (or already existing) saga: ids to steer it and its page in the Temporal UI."""

    workflow_id: str
    run_id: str
    correlation_id: str
    user_id: str
    url: str


class ExtractionFailed(BaseModel):
    """A saga that ended failed or cancelled (after compensating), and why."""

    outcome: Literal["failed or cancelled"] = "failed or cancelled"
    reason: str


async def connect(settings: Settings) -> Client:
    """A Temporal client for ``settings`` with the pydantic data converter the saga needs.

    :raises ServiceNotConfigured: no Temporal address is known.
    :raises RuntimeError: Temporal cannot be reached.
    """
    return await Client.connect(
        settings.require_temporal_address(),
        namespace=settings.temporal_namespace,
        data_converter=sealing_converter(settings),
        # Once, here: workers built from this client inherit it (twice would duplicate spans).
        interceptors=[TracingInterceptor()],
    )


def sealing_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter with each saga's payloads (and failure messages) sealed with
    its user's key (memsaga/payload_codec.py); the database and the master key are needed once a
    sealed payload is encoded or decoded."""
    access = KeyAccess(settings)
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=SealingCodec(access),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def register_owner(client: Client, workflow_id: str, user_id: str) -> None:
    """Record ``workflow_id`` as ``user_id``'s saga, so that its payloads are sealed with the
    user's key (a client without the sealing codec records nothing)."""
    codec = client.data_converter.payload_codec
    if isinstance(codec, SealingCodec):
        owners, _ = await codec.access.get()
        await owners.register(workflow_id, user_id)


def workflow_id_for(key: str | None = None) -> str:
    """``extract-<key>``; a fresh random key when none is given."""
    key = key or uuid.uuid4().hex
    return key if key.startswith(WORKFLOW_ID_PREFIX) else f"{WORKFLOW_ID_PREFIX}{key}"


async def start_extraction(
    client: Client,
    request: ExtractionRequest,
    *,
    workflow_id: str | None = None,
    settings: Settings | None = None,
    blobs: BlobStore | None = None,
) -> ExtractionHandle:
    """Start a saga for ``request``, or return the one already started under ``workflow_id``.

    The correlation id defaults to the workflow id. Text over 16 KiB is put in ``blobs``
    first and the workflow gets only its hash (history stays small).

    :raises InvalidExtractionRequest: the request is malformed (an id that
        :mod:`sagas.memory_extraction.identifiers` refuses, too), or its text is long and no
        blob store was given.
    """
    settings = settings or Settings()
    workflow_id = workflow_id_for(workflow_id)
    request = await _prepared(request, workflow_id, blobs)
    correlation_id = request.correlation_id or workflow_id
    attributes = TypedSearchAttributes(
        [SearchAttributePair(CORRELATION_ID, correlation_id), SearchAttributePair(USER_ID, request.user_id)]
    )
    await register_owner(client, workflow_id, request.user_id)
    try:
        handle = await client.start_workflow(
            MemoryExtraction.run,
            request,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=attributes,
            static_summary=f"memories of {request.user_id} from a {request.source} episode",
        )
        run_id = handle.result_run_id or ""
    except WorkflowAlreadyStartedError as exc:  # closed already: never run twice
        run_id = exc.run_id or ""
        latest = await latest_attempt(client, workflow_id)
        if latest != workflow_id:  # retried (`memsaga retry`): the newest attempt answers for the key
            workflow_id, run_id = latest, ""
    # An existing run may have been started with other values: report what it really has.
    described = await client.get_workflow_handle(workflow_id, run_id=run_id or None).describe()
    found = described.typed_search_attributes
    return ExtractionHandle(
        workflow_id=workflow_id,
        run_id=described.run_id,
        correlation_id=found.get(CORRELATION_ID) or correlation_id,
        user_id=found.get(USER_ID) or request.user_id,
        url=workflow_url(settings.temporal_ui(), client.namespace, workflow_id, described.run_id),
    )


def extraction_options(settings: Settings, *, review: bool = False) -> ExtractionOptions:
    """The options of a new saga: the configured extractor, embedder, review timeout and retry budgets
    (carried in the request, so a running saga keeps its own when the settings change)."""
    return ExtractionOptions(
        review=review,
        review_timeout_seconds=settings.review_timeout_seconds,
        extractor=settings.extractor,
        embedder=settings.embedder,
        retry=StepRetry(
            schedule_to_close_seconds=settings.step_schedule_to_close_seconds,
            adapter_retry_seconds=settings.adapter_retry_seconds,
        ),
    )


async def start_extraction_of_text(
    client: Client,
    request: ExtractionRequest,
    *,
    settings: Settings,
    workflow_id: str | None = None,
    pool: asyncpg.Pool | None = None,
) -> ExtractionHandle:
    """:func:`start_extraction`, putting text over 16 KiB in the blob store first.

    The blob store is on ``pool``; without one a one-connection pool is opened for long text.

    :raises InvalidExtractionRequest: the request is malformed.
    :raises DatabaseUnreachable: long text, and PostgreSQL cannot be reached.
    """
    if request.text is None or len(request.text.encode("utf-8")) <= INLINE_TEXT_LIMIT:
        return await start_extraction(client, request, workflow_id=workflow_id, settings=settings)
    if pool is not None:
        _, blobs = build_stores(pool, settings)
        return await start_extraction(
            client, request, workflow_id=workflow_id, settings=settings, blobs=blobs
        )
    own = await create_pool(settings, min_size=1, max_size=1)
    try:
        return await start_extraction_of_text(
            client, request, settings=settings, workflow_id=workflow_id, pool=own
        )
    finally:
        await own.close()


async def _prepared(
    request: ExtractionRequest, workflow_id: str, blobs: BlobStore | None
) -> ExtractionRequest:
    problems = request_problems(request) + identifier_problems(
        user_id=request.user_id, workflow_id=workflow_id, correlation_id=request.correlation_id
    )
    if problems:
        raise InvalidExtractionRequest("invalid extraction request: " + "; ".join(problems))
    update: dict[str, object] = {"correlation_id": request.correlation_id or workflow_id}
    if request.text is not None and len(request.text.encode("utf-8")) > INLINE_TEXT_LIMIT:
        if blobs is None:
            raise InvalidExtractionRequest(
                f"the text is over {INLINE_TEXT_LIMIT} bytes: pass blobs= (a BlobStore) to store it, "
                "or put it in the blob store yourself and send text_sha256"
            )
        update |= {
            "text": None,
            "text_sha256": await blobs.put(request.text.encode("utf-8"), user_id=request.user_id),
        }
    return request.model_copy(update=update)


def _handle(client: Client, workflow_id: str) -> WorkflowHandle[MemoryExtraction, ExtractionResult]:
    return client.get_workflow_handle_for(MemoryExtraction.run, workflow_id)


async def extraction_status(client: Client, workflow_id: str) -> ExtractionStatus:
    """The saga's step, counts and review state.

    A running saga answers the ``status`` query (a worker must run); a closed one is described
    from its result or failure in Temporal's history, so that it needs no worker (the review
    items and the reconcile counts are then in the event store only: ``memsaga trace``).
    """
    handle = _handle(client, workflow_id)
    described = await handle.describe()
    if described.status in (None, WorkflowExecutionStatus.RUNNING):
        return await handle.query(MemoryExtraction.status)
    status = ExtractionStatus(
        workflow_id=workflow_id,
        correlation_id=described.typed_search_attributes.get(CORRELATION_ID) or workflow_id,
        episode_id=episode_id_for(workflow_id),
        step="done",
    )
    last_step, cancel_reason = await _replay_steps(client, handle, status)
    try:
        result = await handle.result(follow_runs=False)
    except WorkflowFailureError as exc:
        status = _failed_status(status, described.status, exc)
        if status.outcome == "cancelled":
            status.failed_step = last_step
            status.reason = f"cancelled: {cancel_reason or 'no reason given'}"
        return status
    status.candidates, status.duplicates = result.candidates, result.duplicates
    status.reason = result.reason
    if result.outcome == "completed":
        status.outcome, status.memory_ids = "completed", result.memory_ids
        status.memories_created = len(result.memory_ids)
    else:
        status.outcome, status.step = "rejected", "compensated"
    return status


async def _replay_steps(
    client: Client, handle: WorkflowHandle[MemoryExtraction, ExtractionResult], status: ExtractionStatus
) -> tuple[str | None, str | None]:
    """Fill ``status``'s counts and review items from the activities in the run's history;
    ``(the last step started, why the run was cancelled)``."""
    history = await handle.fetch_history()
    last_step: str | None = None
    cancel_reason: str | None = None
    converter = client.data_converter
    scheduled: dict[int, tuple[str, Sequence[Payload]]] = {}
    requested = False
    candidates: dict[str, CandidateSummary] = {}
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes.input.payloads
            [request] = await converter.decode(started, [ExtractionRequest])
            requested = request.options.review
        elif event.HasField("workflow_execution_cancel_requested_event_attributes"):
            cancel_reason = event.workflow_execution_cancel_requested_event_attributes.cause
        elif event.HasField("activity_task_scheduled_event_attributes"):
            scheduled_attributes = event.activity_task_scheduled_event_attributes
            last_step = _STEP_OF.get(scheduled_attributes.activity_type.name, last_step)
            scheduled[event.event_id] = (
                scheduled_attributes.activity_type.name,
                list(scheduled_attributes.input.payloads),
            )
        elif event.HasField("activity_task_completed_event_attributes"):
            completed = event.activity_task_completed_event_attributes
            name, payloads = scheduled[completed.scheduled_event_id]
            step = name.removeprefix("memory_extraction.")
            if step == "extract_candidates":
                [extracted] = await converter.decode(completed.result.payloads, [ExtractResult])
                candidates = {c.candidate_id: c for c in extracted.candidates}
                status.candidates = len(candidates)
            elif step == "deduplicate_candidates":
                [deduped] = await converter.decode(completed.result.payloads, [DeduplicateResult])
                status.duplicates = deduped.duplicates
            elif step == "reconcile_candidates":
                [reconciled] = await converter.decode(completed.result.payloads, [ReconcileResult])
                status.duplicates += reconciled.duplicates
                status.superseding, status.invalidating = reconciled.superseded, reconciled.invalidated
            elif step == "request_review":
                [asked] = await converter.decode(payloads, [RequestReviewInput])
                status.review_reasons = asked.reasons
                status.review = [
                    ReviewItem.of(candidates[c], requested=requested)
                    for c in asked.candidate_ids
                    if c in candidates
                ]
            elif step == "decide_review":
                [decided] = await converter.decode(payloads, [DecideReviewInput])
                for item in status.review:
                    if decided.candidate_ids is None or item.candidate_id in decided.candidate_ids:
                        item.decision = "approved" if decided.approved else "rejected"
    return last_step, cancel_reason


_STEP_OF = {
    f"memory_extraction.{activity}": step
    for activity, step in (
        ("record_episode", RECORD),
        ("extract_candidates", EXTRACT),
        ("embed_candidates", EMBED),
        ("deduplicate_candidates", DEDUP),
        ("reconcile_candidates", RECONCILE),
        ("request_review", REVIEW),
        ("decide_review", REVIEW),
        ("store_memories", STORE),
        ("complete_extraction", COMPLETE),
    )
}
"""The step each forward activity belongs to (compensations belong to none)."""


def _failed_status(
    status: ExtractionStatus, closed: WorkflowExecutionStatus, exc: WorkflowFailureError
) -> ExtractionStatus:
    """``status`` of a run that ended failed, cancelled, terminated or timed out."""
    cause = exc.cause
    status.reason = describe_failure(cause) if cause is not None else closed.name.lower()
    status.outcome, status.step = "failed", "compensated"
    if closed == WorkflowExecutionStatus.CANCELED:
        status.outcome = "cancelled"
    elif isinstance(cause, ApplicationError) and cause.type == StepFailedError.__name__:
        status.failed_step = str(cause.details[0]) if cause.details else None
    elif isinstance(cause, ApplicationError) and cause.type == CompensationFailedError.__name__:
        status.outcome, status.step = "compensation_failed", "compensating"
        status.failed_step = str(cause.details[0]) if cause.details else None
    else:  # refused at start, terminated or timed out: nothing was compensated
        status.step = closed.name.lower()
    return status


async def extraction_result(client: Client, workflow_id: str) -> ExtractionResult:
    """Wait for the saga to finish. :raises WorkflowFailureError: it failed or was cancelled."""
    return await _handle(client, workflow_id).result()


async def extraction_outcome(client: Client, workflow_id: str) -> ExtractionResult | ExtractionFailed:
    """Wait for the saga to finish: its result, or why it failed or was cancelled."""
    try:
        return await extraction_result(client, workflow_id)
    except WorkflowFailureError as exc:
        return ExtractionFailed(reason=describe_failure(exc))


async def approve_extraction(
    client: Client,
    workflow_id: str,
    *,
    reviewer: str | None = None,
    note: str | None = None,
    candidate_ids: Sequence[str] | None = None,
) -> None:
    """Approve the candidates the saga waits on (signal ``approve``): those of ``candidate_ids``,
    or every one still undecided."""
    decision = ReviewDecision(reviewer=reviewer, note=note, candidate_ids=_ids(candidate_ids))
    await _handle(client, workflow_id).signal(MemoryExtraction.approve, decision)


async def reject_extraction(
    client: Client,
    workflow_id: str,
    *,
    reviewer: str | None = None,
    reason: str | None = None,
    candidate_ids: Sequence[str] | None = None,
) -> None:
    """Reject candidates (signal ``reject``): those of ``candidate_ids`` are not stored; without
    them the whole saga is rejected and compensates."""
    decision = ReviewDecision(reviewer=reviewer, note=reason, candidate_ids=_ids(candidate_ids))
    await _handle(client, workflow_id).signal(MemoryExtraction.reject, decision)


def _ids(candidate_ids: Sequence[str] | None) -> list[str] | None:
    return list(dict.fromkeys(candidate_ids)) if candidate_ids else None


async def candidate_texts(store: EventStore, episode_id: str) -> dict[str, str]:
    """``{candidate id: text}`` of an episode's candidates (what a reviewer reads), from the event store."""
    for event in await store.read_stream(episode_stream(episode_id)):
        if event.event_type == CandidatesExtracted.event_type:
            return {
                c.candidate_id: c.text for c in CandidatesExtracted.model_validate(event.payload).candidates
            }
    return {}


RETRY_SUFFIX = re.compile(r"-r(?P<attempt>[2-9]|[1-9][0-9]+)$")
"""A retry's workflow id is the first run's with ``-r<attempt>`` (attempt 2, 3, …)."""


class SagaNotFound(NotFound):
    """No saga runs or ran under this workflow id."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no saga {workflow_id}: check the id (`memsaga extractions` lists them)")


class SagaNotRetryable(MemsagaError):
    """Only a saga that failed, was cancelled, rejected or compensated can be retried."""

    def __init__(self, workflow_id: str, state: str) -> None:
        self.workflow_id = workflow_id
        self.state = state
        super().__init__(
            f"saga {workflow_id} is {state}: only a failed, cancelled, rejected or compensated saga can be"
            f" retried (see `memsaga status {workflow_id}`)"
        )


def first_attempt(workflow_id: str) -> str:
    """The workflow id of a request's first run (``extract-k-r3`` → ``extract-k``)."""
    return RETRY_SUFFIX.sub("", workflow_id)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _attempts(client: Client, workflow_id: str) -> tuple[str, int]:
    """``(the first run's workflow id, how many runs)`` of ``workflow_id``'s request.

    :raises SagaNotFound: no run has this id.
    """
    workflow_id = workflow_id_for(workflow_id)
    base = first_attempt(workflow_id)
    if base != workflow_id and not await _exists(client, base):
        base = workflow_id  # a key that merely ends like a retry
    if not await _exists(client, base):
        raise SagaNotFound(workflow_id)
    runs = 1
    while await _exists(client, f"{base}-r{runs + 1}"):
        runs += 1
    return base, runs


def _attempt_id(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}-r{attempt}"


async def latest_attempt(client: Client, workflow_id: str) -> str:
    """The workflow id of the newest run of ``workflow_id``'s request (itself when never retried).

    :raises SagaNotFound: no run has this id.
    """
    return _attempt_id(*await _attempts(client, workflow_id))


async def _request_of(client: Client, workflow_id: str) -> ExtractionRequest:
    """The request a run was started with (the first event of its history)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [request] = await client.data_converter.decode(started.input.payloads, [ExtractionRequest])
    assert isinstance(request, ExtractionRequest)
    return request


async def retry_extraction(
    client: Client, workflow_id: str, *, settings: Settings | None = None
) -> ExtractionHandle:
    """Run a failed, cancelled, rejected or compensated request again, as a new saga.

    The new run's workflow id is the first run's with ``-r<attempt>`` (``extract-k-r2``, …): its
    event ids, episode and memory ids derive from it, so they never collide with an earlier
    run's. Its correlation id is its workflow id (or, when the request named one, that one with
    ``-r<attempt>``): each run is one row of ``memsaga extractions``. The request (text or blob
    hash, user, source, options) is the first run's. Retrying the same attempt twice starts one run.

    :raises SagaNotFound: no saga has this id.
    :raises SagaNotRetryable: its newest run is running or completed.
    """
    base, runs = await _attempts(client, workflow_id)
    latest = _attempt_id(base, runs)
    handle = _handle(client, latest)
    state = (await handle.describe()).status
    if state in (None, WorkflowExecutionStatus.RUNNING):
        raise SagaNotRetryable(latest, "running")
    if state == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result(follow_runs=False)
        if result.outcome == "completed":
            raise SagaNotRetryable(latest, "completed")
    attempt = runs + 1
    new_id = _attempt_id(base, attempt)
    first = await _request_of(client, base)
    named = first.correlation_id is not None and first.correlation_id != base
    correlation_id = f"{first.correlation_id}-r{attempt}" if named else new_id
    request = first.model_copy(update={"correlation_id": correlation_id})
    return await start_extraction(client, request, workflow_id=new_id, settings=settings)


class SagaFinished(MemsagaError):
    """The saga has ended: it can no longer be cancelled (its memories can be retracted one by one)."""

    def __init__(self, workflow_id: str, status: str) -> None:
        self.workflow_id = workflow_id
        self.status = status
        super().__init__(
            f"saga {workflow_id} is finished ({status}) and cannot be cancelled; to remove one of"
            f" its memories: `memsaga retract MEMORY_ID --reason …` (ids: `memsaga status {workflow_id}`)"
        )


async def cancel_extraction(client: Client, workflow_id: str, *, reason: str = "cancelled by user") -> None:
    """Cancel the saga: it compensates, then ends Cancelled.

    :raises SagaFinished: the saga has already ended.
    """
    handle = _handle(client, workflow_id)
    description = await handle.describe()
    if description.status is not None and description.status != WorkflowExecutionStatus.RUNNING:
        raise SagaFinished(workflow_id, description.status.name.lower())
    await handle.cancel(reason=reason)
