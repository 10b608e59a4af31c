"""The ``MemoryExtraction`` workflow: episode → candidates → vectors → dedup → review → memories.

Orchestration only: every effect is an activity, every id is derived from the workflow id
and the step, every timestamp is ``workflow.now()``. Compensations (``sagas.compensation``)
are registered before the steps they undo; on a step's permanent failure, a rejection or a
cancellation they run newest first: ``MemoryRetracted`` for each memory created, then
``ExtractionCompensated``. See docs/sagas.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.memory_extraction import MemoryExtractionActivities as Acts
    from activities.memory_extraction_io import (
        Appended,
        CompensateExtractionInput,
        CompleteInput,
        DecideReviewInput,
        DeduplicateInput,
        DeduplicateResult,
        EmbedInput,
        ExtractInput,
        ExtractResult,
        ReconcileInput,
        ReconcileResult,
        RecordCompensationFailedInput,
        RecordEpisodeInput,
        RequestReviewInput,
        RetractMemoriesInput,
        RetractResult,
        StoreMemoriesInput,
    )
    from sagas.compensation import (
        Compensation,
        CompensationContext,
        CompensationFailedError,
        Saga,
    )
    from sagas.memory_extraction.domain import (
        COMPLETE,
        DEDUP,
        EMBED,
        EXTRACT,
        RECONCILE,
        RECORD,
        REVIEW,
        STORE,
        CandidateSummary,
        Envelope,
        ExtractionRequest,
        ExtractionResult,
        ExtractionStatus,
        InvalidExtractionRequest,
        PlannedMemory,
        ReviewDecision,
        ReviewItem,
        episode_id_for,
        plan_memories,
        request_problems,
        review_needed,
    )

R = TypeVar("R")
In = TypeVar("In")

CORRELATION_ID = SearchAttributeKey.for_keyword("CorrelationId")
"""Search attribute: every run of one correlation id (register it: ``memsaga dev up`` does)."""
USER_ID = SearchAttributeKey.for_keyword("UserId")
"""Search attribute: every run for one user."""

SHORT_STEP = timedelta(seconds=20)
"""Start-to-close of the steps that only read and append (no adapter): also how long a step
whose worker died waits before Temporal retries it elsewhere (a chaos run measured 60 s with 60)."""
ADAPTER_STEP = timedelta(minutes=10)


@workflow.defn(name="MemoryExtraction")
class MemoryExtraction:
    """One request, one saga: see the module docstring and docs/sagas.md."""

    @workflow.init
    def __init__(self, request: ExtractionRequest) -> None:
        info = workflow.info()
        self._request = request
        self._workflow_id = info.workflow_id
        self._correlation_id = request.correlation_id or info.workflow_id
        self._status = ExtractionStatus(
            workflow_id=info.workflow_id,
            correlation_id=self._correlation_id,
            episode_id=episode_id_for(info.workflow_id),
            step="starting",
        )
        self._decisions: list[tuple[bool, ReviewDecision]] = []
        self._changing: list[str] = []
        self._last_event_id = info.workflow_id  # the request itself causes the first event
        self._version = 0
        self._last_position: int | None = None
        self._saga = Saga(record_failure=self._record_compensation_failed)

    @workflow.run
    async def run(self, request: ExtractionRequest) -> ExtractionResult:
        """Run the saga; returns on completion or rejection, raises on failure or cancellation."""
        problems = request_problems(request)
        if problems:
            raise ApplicationError(
                "invalid extraction request: " + "; ".join(problems),
                type=InvalidExtractionRequest.__name__,
                non_retryable=True,
            )
        self._ensure_search_attributes()
        try:
            result = await self._saga.run(self._steps)
        except BaseException as error:
            self._finish_with(error)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    @workflow.signal
    def approve(self, decision: ReviewDecision | None = None) -> None:
        """A reviewer approves the candidates it names (none named: every one still undecided)."""
        self._decisions.append((True, decision or ReviewDecision()))

    @workflow.signal
    def reject(self, decision: ReviewDecision | None = None) -> None:
        """A reviewer rejects the candidates it names; naming none, the saga compensates."""
        self._decisions.append((False, decision or ReviewDecision()))

    @workflow.query
    def status(self) -> ExtractionStatus:
        """Current step, counts, and whether the saga waits for a review."""
        return self._status

    async def _steps(self) -> ExtractionResult:
        options = self._request.options
        self._saga.add_compensation(
            self._compensation(RECORD, Acts.compensate_extraction, self._compensate_input)
        )
        await self._step(RECORD, self._record)
        extracted = await self._step(EXTRACT, self._extract)
        self._status.candidates = len(extracted.candidates)
        await self._step(EMBED, self._embed)
        deduped = await self._step(DEDUP, self._dedup)
        self._status.duplicates = deduped.duplicates
        kept_ids, ending_ids = deduped.kept, []
        # Sagas started before reconciliation existed replay without it (saved histories).
        if workflow.patched(RECONCILE):
            reconciled = await self._step(RECONCILE, self._reconcile)
            self._status.duplicates += reconciled.duplicates
            self._status.superseding, self._status.invalidating = (
                reconciled.superseded,
                reconciled.invalidated,
            )
            kept_ids, ending_ids = reconciled.kept, reconciled.ending
        changing = [c for c in extracted.candidates if c.candidate_id in {*kept_ids, *ending_ids}]
        self._changing = [c.candidate_id for c in changing]
        under_review, reasons = review_needed(changing, requested=options.review)
        approved: list[str] | None = None
        if under_review:
            reviewed = [c for c in changing if c.candidate_id in set(under_review)]
            rejected, rejection = await self._step(REVIEW, lambda: self._review(reviewed, reasons))
            if rejection is not None:
                await self._saga.compensate(rejection, REVIEW)
                self._status.outcome, self._status.reason = "rejected", rejection
                self._status.step = "compensated"
                return self._result("rejected", rejection)
            kept_ids = [c for c in kept_ids if c not in rejected]
            approved = [c.candidate_id for c in changing if c.candidate_id not in rejected]
        planned = plan_memories(self._workflow_id, kept_ids)
        self._saga.add_compensation(
            self._compensation(STORE, Acts.retract_memories, self._retract_input(planned))
        )
        await self._step(STORE, lambda: self._store(planned, approved))
        self._status.memory_ids = [p.memory_id for p in planned]
        self._status.memories_created = len(planned)
        await self._step(COMPLETE, self._complete)
        self._status.outcome, self._status.step = "completed", "done"
        return self._result("completed", None)

    async def _step(self, name: str, action: Callable[[], Awaitable[R]]) -> R:
        self._status.step = name
        return await self._saga.step(name, action)

    async def _record(self) -> Appended:
        request = self._request
        arg = RecordEpisodeInput(
            envelope=self._envelope(),
            episode_id=self._status.episode_id,
            text=request.text,
            text_sha256=request.text_sha256,
            source=request.source,
            options=request.options,
        )
        return self._advance(await self._call(Acts.record_episode, arg))

    async def _extract(self) -> ExtractResult:
        arg = ExtractInput(**self._step_fields(), options=self._request.options)
        return self._advance(await self._call(Acts.extract_candidates, arg, adapter=True))

    async def _embed(self) -> Appended:
        arg = EmbedInput(**self._step_fields(), options=self._request.options)
        return self._advance(await self._call(Acts.embed_candidates, arg, adapter=True))

    async def _dedup(self) -> DeduplicateResult:
        return self._advance(
            await self._call(Acts.deduplicate_candidates, DeduplicateInput(**self._step_fields()))
        )

    async def _reconcile(self) -> ReconcileResult:
        return self._advance(
            await self._call(Acts.reconcile_candidates, ReconcileInput(**self._step_fields()))
        )

    async def _review(
        self, candidates: list[CandidateSummary], reasons: list[str]
    ) -> tuple[list[str], str | None]:
        """Ask for a review, then record each decision until every candidate under review has one.

        A decision names candidates (``approve/reject --only``) or, naming none, covers all
        still undecided. Returns ``(rejected candidate ids, why the saga is rejected or None)``:
        the saga is rejected by a rejection naming no candidate, by the timeout, or when the
        rejections leave nothing to store.
        """
        timeout = self._request.options.review_timeout_seconds
        ids = [c.candidate_id for c in candidates]
        arg = RequestReviewInput(
            **self._step_fields(), candidate_ids=ids, reasons=reasons, timeout_seconds=timeout
        )
        self._advance(await self._call(Acts.request_review, arg))
        requested = self._request.options.review
        self._status.review = [ReviewItem.of(c, requested=requested) for c in candidates]
        self._status.waiting_for_review, self._status.review_reasons = True, reasons
        deadline = workflow.now() + timedelta(seconds=timeout)
        undecided, rejected, rejection, decisions = list(ids), [], None, 0
        try:
            while undecided:
                remaining = (deadline - workflow.now()).total_seconds()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    await workflow.wait_condition(
                        lambda: bool(self._decisions), timeout=remaining, timeout_summary="review"
                    )
                except TimeoutError:
                    nobody = ReviewDecision(note=f"no review decision within {timeout:g} s")
                    rejection = _review_reason(False, True, nobody)
                    decisions += 1
                    await self._decide(
                        decisions,
                        undecided,
                        ids,
                        approved=False,
                        decision=nobody,
                        reason=rejection,
                        timed_out=True,
                    )
                    rejected += undecided
                    break
                approve, decision = self._decisions.pop(0)
                named = decision.candidate_ids
                chosen = [c for c in undecided if named is None or c in named]
                if not chosen:
                    continue  # names nothing still undecided: nothing to record
                reason = _review_reason(approve, False, decision)
                decisions += 1
                await self._decide(decisions, chosen, ids, approved=approve, decision=decision, reason=reason)
                undecided = [c for c in undecided if c not in chosen]
                if not approve:
                    rejected += chosen
                    if named is None:
                        rejection = reason
                        break
        finally:
            self._status.waiting_for_review = False
        if rejection is None and rejected and not set(self._changing) - set(rejected):
            rejection = f"every candidate was rejected ({len(rejected)})"
        return rejected, rejection

    async def _decide(
        self,
        index: int,
        chosen: list[str],
        all_ids: list[str],
        *,
        approved: bool,
        decision: ReviewDecision,
        reason: str,
        timed_out: bool = False,
    ) -> None:
        """Record decision number ``index`` of the review (its event ``review:<index>``) for ``chosen``."""
        decided = DecideReviewInput(
            **self._step_fields(),
            approved=approved,
            reviewer=decision.reviewer,
            note=decision.note if approved else reason,
            timed_out=timed_out,
            index=index,
            candidate_ids=None if chosen == all_ids else chosen,
        )
        self._advance(await self._call(Acts.decide_review, decided))
        for item in self._status.review:
            if item.candidate_id in chosen:
                item.decision = "approved" if approved else "rejected"

    async def _store(self, planned: list[PlannedMemory], approved: list[str] | None) -> None:
        arg = StoreMemoriesInput(**self._step_fields(), memories=planned, approved=approved)
        await self._call(Acts.store_memories, arg)

    async def _complete(self) -> Appended:
        status = self._status
        arg = CompleteInput(
            **self._step_fields(),
            candidates=status.candidates,
            duplicates=status.duplicates,
            memory_ids=status.memory_ids,
        )
        return self._advance(await self._call(Acts.complete_extraction, arg))

    # --- compensations ---------------------------------------------------------------------

    def _retract_input(
        self, planned: list[PlannedMemory]
    ) -> Callable[[CompensationContext], RetractMemoriesInput]:
        def build(context: CompensationContext) -> RetractMemoriesInput:
            return RetractMemoriesInput(
                envelope=self._envelope(),
                episode_id=self._status.episode_id,
                memories=planned,
                reason=context.reason,
                causation_id=self._last_event_id,
            )

        return build

    def _compensate_input(self, context: CompensationContext) -> CompensateExtractionInput:
        retracted = context.results.get(STORE, RetractResult())
        self._status.step = "compensating"
        return CompensateExtractionInput(
            envelope=self._envelope(),
            episode_id=self._status.episode_id,
            reason=context.reason,
            failed_step=context.failed_step,
            retracted_memory_ids=retracted.retracted_memory_ids,
            retracted_event_ids=[*retracted.reinstated_event_ids, *retracted.retracted_event_ids],
            reinstated_memory_ids=retracted.reinstated_memory_ids,
            causation_id=self._last_event_id,
            source=self._request.source,
            options=self._request.options,
        )

    async def _record_compensation_failed(self, step: str, error: str, context: CompensationContext) -> None:
        arg = RecordCompensationFailedInput(
            envelope=self._envelope(),
            episode_id=self._status.episode_id,
            step=step,
            error=error,
            causation_id=self._last_event_id,
        )
        await workflow.execute_activity_method(
            Acts.record_compensation_failed,
            arg,
            start_to_close_timeout=SHORT_STEP,
            schedule_to_close_timeout=self._schedule_to_close(),
            retry_policy=self._retry_policy(),
        )

    def _compensation(
        self, step: str, activity: Callable[..., Awaitable[Any]], build: Callable[[CompensationContext], Any]
    ) -> Compensation:
        """A compensation that outlasts outages: retried like a step (errors.py bounds permanent errors)."""
        return Compensation(
            step,
            activity,
            build,
            retry_policy=self._retry_policy(),
            schedule_to_close_timeout=self._schedule_to_close(),
        )

    # --- helpers ---------------------------------------------------------------------------

    async def _call(
        self, activity: Callable[[Any, In], Awaitable[R]], arg: In, *, adapter: bool = False
    ) -> R:
        options = self._request.options
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=ADAPTER_STEP if adapter else SHORT_STEP,
            schedule_to_close_timeout=self._schedule_to_close(),
            heartbeat_timeout=timedelta(seconds=options.heartbeat_timeout_seconds) if adapter else None,
            retry_policy=self._retry_policy(),
            # A cancelled saga compensates only once the step in flight has settled.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=self._status.step,
        )

    def _retry_policy(self) -> RetryPolicy:
        """Unlimited attempts with capped backoff: only permanent errors (non-retryable, see
        activities/errors.py, which also bounds an adapter's retries) or the schedule-to-close
        end a step. No non-retryable types here, and the policy is no part of the determinism check."""
        retry = self._request.options.retry
        return RetryPolicy(
            initial_interval=timedelta(seconds=retry.initial_interval_seconds),
            maximum_interval=timedelta(seconds=retry.maximum_interval_seconds),
            maximum_attempts=0,
        )

    def _schedule_to_close(self) -> timedelta:
        return timedelta(seconds=self._request.options.retry.schedule_to_close_seconds)

    def _advance(self, appended: R) -> R:
        """Remember where the step left the episode stream: the next event's cause and version."""
        assert isinstance(appended, Appended)
        self._last_event_id, self._version = appended.event_id, appended.version
        self._last_position = appended.position
        return appended

    def _envelope(self) -> Envelope:
        return Envelope(
            workflow_id=self._workflow_id,
            correlation_id=self._correlation_id,
            user_id=self._request.user_id,
            occurred_at=workflow.now(),
            metadata={"workflow_run_id": workflow.info().run_id},
        )

    def _step_fields(self) -> dict[str, Any]:
        return {
            "envelope": self._envelope(),
            "episode_id": self._status.episode_id,
            "causation_id": self._last_event_id,
            "expected_version": self._version,
        }

    def _result(self, outcome: str, reason: str | None) -> ExtractionResult:
        status = self._status
        return ExtractionResult.model_validate(
            {
                "outcome": outcome,
                "episode_id": status.episode_id,
                "candidates": status.candidates,
                "duplicates": status.duplicates,
                "memory_ids": status.memory_ids if outcome == "completed" else [],
                "reason": reason,
                "last_position": self._last_position if outcome == "completed" else None,
            }
        )

    def _ensure_search_attributes(self) -> None:
        """Clients set them at start; a run started otherwise (``temporal workflow start``) gets them here."""
        current = workflow.info().typed_search_attributes
        updates = [
            key.value_set(value)
            for key, value in ((CORRELATION_ID, self._correlation_id), (USER_ID, self._request.user_id))
            if current.get(key) is None
        ]
        if updates:
            workflow.upsert_search_attributes(updates)

    def _finish_with(self, error: BaseException) -> None:
        """Record how the run ended, for the ``status`` query."""
        status = self._status
        if not (is_cancelled_exception(error) or isinstance(error, FailureError)):
            return  # a bug in workflow code: the task fails and is retried, nothing ended
        if isinstance(error, CompensationFailedError):
            status.outcome = "compensation_failed"
        elif is_cancelled_exception(error):
            status.outcome = "cancelled"
        else:
            status.outcome = "failed"
        status.failed_step = self._saga.current_step
        if status.outcome == "cancelled":
            status.reason = f"cancelled: {workflow.cancellation_reason() or 'no reason given'}"
        else:
            status.reason = str(error) or type(error).__name__
        if self._saga.compensated and status.outcome != "compensation_failed":
            status.step = "compensated"
        status.waiting_for_review = False


def _review_reason(approved: bool, timed_out: bool, decision: ReviewDecision) -> str:
    if approved:
        return decision.note or "approved"
    if timed_out:
        return f"review timed out: {decision.note}"
    return f"rejected by {decision.reviewer or 'a reviewer'}: {decision.note or 'no reason given'}"
