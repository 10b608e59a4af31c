"""The ``Reextraction`` workflow and its children, one ``EpisodeReextraction`` per episode.

``Reextraction`` (id ``reextract-<request id>``) records the request, lists the completed
episodes page by page and runs a child per episode (id ``reextract-<request id>-<episode id>``),
at most ``max_concurrency`` at once and ``max_per_second`` started per second; its ``progress``
query counts what they did. A child that ran before (a re-submitted request, a continued run)
is not started again. Orchestration only: every effect is an activity. See docs/evolution.md.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.reextraction import (
        ListEpisodesInput,
        RecordCompletionInput,
        RecordedOutcomeInput,
        RecordRequestInput,
        ReextractEpisodeInput,
        Step,
    )
    from activities.reextraction import ReextractionActivities as Acts
    from sagas.reextraction import (
        EpisodeJob,
        EpisodeOutcome,
        EpisodePage,
        EpisodeRef,
        ReextractionProgress,
        ReextractionRequest,
        episode_workflow_id,
    )
    from workflows.memory_extraction import USER_ID

SHORT_STEP = timedelta(seconds=60)
ADAPTER_STEP = timedelta(minutes=10)
EPISODE_HEARTBEAT = timedelta(seconds=10)
RECORD_COMPLETION = "record-completion"
"""Patch: runs started after it record ``ReextractionCompleted`` at the end (search switches on it)."""
CONTINUE_AFTER_EVENTS = 10_000
"""History length after which the orchestrator continues as new (Temporal caps a history at 50k)."""


def _retry(request: ReextractionRequest) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=request.retry.initial_interval_seconds),
        maximum_interval=timedelta(seconds=request.retry.maximum_interval_seconds),
        maximum_attempts=0,
    )


@workflow.defn(name="EpisodeReextraction")
class EpisodeReextraction:
    """One episode under one request: extract, embed, decide and apply (one idempotent activity)."""

    @workflow.run
    async def run(self, job: EpisodeJob) -> EpisodeOutcome:
        step = Step(workflow_id=workflow.info().workflow_id, occurred_at=workflow.now())
        return await workflow.execute_activity_method(
            Acts.reextract_episode,
            ReextractEpisodeInput(step=step, job=job),
            start_to_close_timeout=ADAPTER_STEP,
            schedule_to_close_timeout=timedelta(seconds=job.retry.schedule_to_close_seconds),
            # Heartbeats carry a cancellation to the activity: within 8 s (Temporal sends them at
            # most every 80% of the timeout); the adapters heartbeat every second while they wait.
            heartbeat_timeout=EPISODE_HEARTBEAT,
            # Cancelled (a forget of the user), the saga closes only once the activity has stopped,
            # so the forget destroys the key after the last write of the user, never before.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=job.retry.initial_interval_seconds),
                maximum_interval=timedelta(seconds=job.retry.maximum_interval_seconds),
                maximum_attempts=0,
            ),
            summary=f"episode {job.episode.episode_id}",
        )


class Cursor(ReextractionProgress):
    """The progress carried over ``continue_as_new``: where the listing goes on."""

    after_position: int = 0
    causation_id: str | None = None


@workflow.defn(name="Reextraction")
class Reextraction:
    """Re-extract the completed episodes of a user, or of every user (see the module docstring)."""

    @workflow.init
    def __init__(self, request: ReextractionRequest, carried: Cursor | None = None) -> None:
        self._request = request
        self._progress = carried or Cursor(
            request_id=request.request_id,
            scope="all" if request.user_id is None else "user",
            user_id=request.user_id,
            extractor=request.extractor,
            embedder=request.embedder,
        )
        self._running = 0

    @workflow.query
    def progress(self) -> ReextractionProgress:
        """How many episodes are done, and what they changed."""
        return ReextractionProgress.model_validate(self._progress.model_dump(include=_PROGRESS_FIELDS))

    @workflow.run
    async def run(self, request: ReextractionRequest, carried: Cursor | None = None) -> ReextractionProgress:
        progress = self._progress
        if progress.causation_id is None:
            step = Step(workflow_id=workflow.info().workflow_id, occurred_at=workflow.now())
            recorded = await workflow.execute_activity_method(
                Acts.record_request,
                RecordRequestInput(step=step, request=request),
                start_to_close_timeout=ADAPTER_STEP,
                retry_policy=_retry(request),
            )
            progress.causation_id, progress.total = recorded.event_id, recorded.episodes
        while True:
            page: EpisodePage = await workflow.execute_activity_method(
                Acts.list_episodes,
                ListEpisodesInput(request=request, after_position=progress.after_position),
                start_to_close_timeout=ADAPTER_STEP,
                retry_policy=_retry(request),
            )
            await self._run_page(page.episodes)
            if page.next_position is None:
                break
            progress.after_position = page.next_position
            if workflow.info().get_current_history_length() > CONTINUE_AFTER_EVENTS:
                workflow.continue_as_new(args=[request, progress])
        progress.finished = True
        if workflow.patched(RECORD_COMPLETION):
            step = Step(workflow_id=workflow.info().workflow_id, occurred_at=workflow.now())
            await workflow.execute_activity_method(
                Acts.record_completion,
                RecordCompletionInput(
                    step=step,
                    request=request,
                    causation_id=progress.causation_id or "",
                    done=progress.done,
                    failed=progress.failed,
                ),
                start_to_close_timeout=ADAPTER_STEP,
                retry_policy=_retry(request),
            )
        return self.progress()

    async def _run_page(self, episodes: list[EpisodeRef]) -> None:
        request = self._request
        pending: list[asyncio.Task[None]] = []
        for episode in episodes:
            await workflow.wait_condition(lambda: self._running < request.max_concurrency)
            if request.max_per_second is not None and pending:
                await workflow.sleep(timedelta(seconds=1 / request.max_per_second))
            self._running += 1  # counted before the task runs, so the next wait sees it
            pending.append(asyncio.create_task(self._one(episode)))
        await workflow.wait_condition(lambda: all(p.done() for p in pending))

    async def _one(self, episode: EpisodeRef) -> None:
        """Run (or skip, when it ran before) the child of one episode and count its outcome."""
        request, progress = self._request, self._progress
        workflow_id = episode_workflow_id(request.request_id, episode.episode_id)
        job = EpisodeJob(
            request_id=request.request_id,
            episode=episode,
            extractor=request.extractor,
            embedder=request.embedder,
            causation_id=progress.causation_id or "",
            retry=request.retry,
        )
        try:
            outcome = await workflow.execute_child_workflow(
                EpisodeReextraction.run,
                job,
                id=workflow_id,
                # A child that completed is never run again; one cancelled or failed (its parent
                # was terminated, say) runs again when the request is resumed: it is idempotent.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                # A forget finds the user's episode sagas by it, and cancels them.
                search_attributes=TypedSearchAttributes([SearchAttributePair(USER_ID, episode.user_id)])
                if episode.user_id
                else None,
            )
            progress.add(outcome)
        except WorkflowAlreadyStartedError:  # re-extracted under this request before: counted, not run
            recorded = await workflow.execute_activity_method(
                Acts.recorded_outcome,
                RecordedOutcomeInput(workflow_id=workflow_id, episode_id=episode.episode_id),
                start_to_close_timeout=SHORT_STEP,
                retry_policy=_retry(request),
            )
            progress.add(recorded)
            progress.already += 1
        except ChildWorkflowError as error:  # a failed episode is counted, the others go on
            if isinstance(error.cause, CancelledError):  # a forget of its user cancelled it
                progress.done += 1
                progress.skipped_forgotten += 1
                return
            workflow.logger.warning("episode %s failed: %s", episode.episode_id, error)
            progress.done += 1
            progress.failed.append(workflow_id)
        finally:
            self._running -= 1


_PROGRESS_FIELDS = set(ReextractionProgress.model_fields)
