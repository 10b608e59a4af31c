"""Re-extraction from a client (``memsaga reextract``, ``memsaga.client.start_reextraction``): start
the ``Reextraction`` workflow of a request, or join the one running, follow its progress and
wait for its result (docs/evolution.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from adapters import build_embedder, build_extractor
from memsaga.bootstrap import adapter_config
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from sagas.memory_extraction.domain import StepRetry
from sagas.memory_extraction.identifiers import identifier_problem
from sagas.reextraction import ReextractionProgress, ReextractionRequest, request_workflow_id
from workflows.reextraction import Reextraction


class InvalidReextraction(MemsagaError, ValueError):
    """The re-extraction request is malformed (the message says what to change)."""


class ReextractionFailed(MemsagaError):
    """The re-extraction workflow ended without finishing (the message names the cause)."""


def reextraction_request(
    settings: Settings,
    *,
    user_id: str | None,
    extractor: str | None = None,
    embedder: str | None = None,
    request_id: str | None = None,
    requested_by: str | None = None,
) -> ReextractionRequest:
    """A request with the settings' adapters unless named, and the concurrency and rate limits
    of the settings (the http ones when an adapter is ``http``).

    :raises InvalidReextraction: a bad user or request id.
    :raises UnknownAdapter, AdapterNotConfigured: an adapter that cannot be built.
    """
    for value, option in ((user_id, "--user"), (request_id, "--id")):
        problem = identifier_problem(value, option) if value is not None else None
        if problem is not None:
            raise InvalidReextraction(problem)
    extractor, embedder = extractor or settings.extractor, embedder or settings.embedder
    config = adapter_config(settings)
    build_extractor(extractor, config)
    build_embedder(embedder, config)
    http = "http" in (extractor, embedder)
    return ReextractionRequest(
        request_id=request_id or uuid.uuid4().hex,
        user_id=user_id,
        extractor=extractor,
        embedder=embedder,
        max_concurrency=settings.reextract_http_concurrency if http else settings.reextract_concurrency,
        max_per_second=settings.reextract_http_rate if http else None,
        requested_by=requested_by,
        retry=StepRetry(
            schedule_to_close_seconds=settings.step_schedule_to_close_seconds,
            adapter_retry_seconds=settings.adapter_retry_seconds,
        ),
    )


async def start_reextraction(
    client: Client, request: ReextractionRequest, *, settings: Settings
) -> WorkflowHandle[Reextraction, ReextractionProgress]:
    """Start the request's workflow, or return the one started under its id (running or finished).

    A request whose run failed or was terminated runs again: its episodes done before are skipped.
    """
    workflow_id = request_workflow_id(request.request_id)
    try:
        return await client.start_workflow(
            Reextraction.run,
            args=[request, None],
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"re-extraction {request.request_id}: {request.user_id or 'every user'}",
        )
    except WorkflowAlreadyStartedError:  # completed: the request is never run twice
        return client.get_workflow_handle_for(Reextraction.run, workflow_id)


async def reextraction_progress(client: Client, request_id: str) -> ReextractionProgress:
    """The ``progress`` query of the request's workflow (a finished one: its result)."""
    handle = client.get_workflow_handle_for(Reextraction.run, request_workflow_id(request_id))
    return await handle.query(Reextraction.progress)


async def reextract(
    client: Client,
    request: ReextractionRequest,
    *,
    settings: Settings,
    progress: Callable[[ReextractionProgress], None] | None = None,
    poll_seconds: float = 0.5,
) -> ReextractionProgress:
    """Run ``request`` (or join it) and wait for its result, calling ``progress`` while it runs.

    :raises ReextractionFailed: the workflow failed, or was cancelled or terminated.
    """
    handle = await start_reextraction(client, request, settings=settings)
    result = asyncio.ensure_future(handle.result())
    try:
        while progress is not None and not result.done():
            await asyncio.wait({result}, timeout=poll_seconds)
            if not result.done():
                progress(await handle.query(Reextraction.progress))
        finished = await result
    except WorkflowFailureError as exc:
        raise ReextractionFailed(f"re-extraction {request.request_id} failed: {exc.cause or exc}") from exc
    finally:
        result.cancel()
    if progress is not None:
        progress(finished)
    return finished
