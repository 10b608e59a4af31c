"""Activities of the memory-extraction saga: thin adapters between one step and the stores.

Each reads the episode stream, calls a pure function of :mod:`sagas.memory_extraction.domain`
(or an extractor / embedder), appends events whose ids the workflow id and the step decide,
and returns a small result. A retried activity therefore re-appends identical events, which
the event store keeps once. Steps whose adapter may answer differently on a retry (an LLM)
return what the stream already holds instead of asking again.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity

from activities.errors import activity_defn, adapter_call
from activities.memory_extraction_io import (
    Appended,
    CompensateExtractionInput,
    CompensateResult,
    CompleteInput,
    DecideReviewInput,
    DeduplicateInput,
    DeduplicateResult,
    EmbedInput,
    EmbedResult,
    ExtractInput,
    ExtractResult,
    ReconcileInput,
    ReconcileResult,
    RecordCompensationFailedInput,
    RecordEpisodeInput,
    RequestReviewInput,
    RetractMemoriesInput,
    RetractResult,
    StepInput,
    StoreMemoriesInput,
    StoreResult,
)
from activities.memory_index import MemoryIndex
from activities.metrics import records_outcome
from eventstore import ANY, NO_STREAM, BlobStore, EventStore, NewEvent, WrongExpectedVersion, sha256_hex
from eventstore.failpoints import hit_async as failpoint
from sagas.memory_extraction import domain
from sagas.memory_extraction.domain import (
    COMPENSATE,
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
    EpisodeState,
    ExtractionOptions,
    event_key,
    saga_event,
)
from sagas.memory_extraction.embedders import Embedder, vector_to_bytes
from sagas.memory_extraction.events import (
    CandidatesDeduplicated,
    CandidatesEmbedded,
    CandidatesExtracted,
    CandidatesReconciled,
    CompensationFailed,
    EmbeddingRef,
    EpisodeRecorded,
    ExtractionCompensated,
    ExtractionCompleted,
    ExtractionRequested,
    MemoryInvalidated,
    MemoryReinstated,
    MemoryRetracted,
    MemorySuperseded,
    ReviewApproved,
    ReviewRejected,
    ReviewRequested,
    episode_stream,
    memory_stream,
)
from sagas.memory_extraction.extractors import Extractor
from sagas.memory_extraction.lifecycle import memory_state
from sagas.memory_extraction.reconcile import reconcile

ExtractorFactory = Callable[[ExtractionOptions], Extractor]
"""Builds the extractor a request's options name (``memsaga.bootstrap`` binds it to the settings)."""
EmbedderFactory = Callable[[ExtractionOptions], Embedder]
"""Builds the embedder a request's options name."""


class ExtractionPorts:
    """What extracting activities work with: the stores, the memory index and the adapter
    factories, injected by ``memsaga.bootstrap`` (the extraction saga's and re-extraction's)."""

    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        index: MemoryIndex,
        extractors: ExtractorFactory,
        embedders: EmbedderFactory,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.index = index
        self.extractors = extractors
        self.embedders = embedders


class MemoryExtractionActivities(ExtractionPorts):
    """The saga's activities over injected stores and adapter factories (see ``memsaga.bootstrap``)."""

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.record_episode,
            self.extract_candidates,
            self.embed_candidates,
            self.deduplicate_candidates,
            self.reconcile_candidates,
            self.request_review,
            self.decide_review,
            self.store_memories,
            self.complete_extraction,
            self.retract_memories,
            self.compensate_extraction,
            self.record_compensation_failed,
        ]

    @activity_defn("memory_extraction.record_episode")
    async def record_episode(self, input: RecordEpisodeInput) -> Appended:
        """``ExtractionRequested`` + ``EpisodeRecorded``; text over 16 KiB goes to the blob store."""
        env = input.envelope
        text, text_sha256, size = await self._episode_text(input)
        first = _requested(env, input.episode_id, input.source, input.options)
        recorded = EpisodeRecorded(
            episode_id=input.episode_id,
            source=input.source,
            text=text,
            text_sha256=text_sha256,
            text_bytes=size,
        )
        second = saga_event(env, event_key(RECORD, 1), recorded, causation_id=str(first.event_id))
        stream = episode_stream(input.episode_id)
        result = await self.store.append(stream, [first, second], expected_version=NO_STREAM)
        return Appended(
            event_id=str(second.event_id), version=result.last_version, position=result.positions[-1]
        )

    @activity_defn("memory_extraction.extract_candidates")
    async def extract_candidates(self, input: ExtractInput) -> ExtractResult:
        """``CandidatesExtracted``; the extractor heartbeats while it waits for an LLM."""
        state = await self._episode(input.episode_id)
        if CandidatesExtracted.event_type not in state.event_types:
            text = await self._text(state, input.envelope.user_id)
            extractor = self.extractors(input.options)
            candidates = await adapter_call(
                input.options.retry, extractor.extract(text, heartbeat=activity.heartbeat)
            )
            payload = CandidatesExtracted(extractor=extractor.name, candidates=candidates)
            event = saga_event(input.envelope, event_key(EXTRACT), payload, causation_id=input.causation_id)
            state = await self._append_step(input, event)
        summaries = [CandidateSummary.of(c) for c in state.candidates]
        return ExtractResult(
            event_id=_step_event_id(input, EXTRACT), version=state.version, candidates=summaries
        )

    @activity_defn("memory_extraction.embed_candidates")
    async def embed_candidates(self, input: EmbedInput) -> EmbedResult:
        """``CandidatesEmbedded``: vectors go to the blob store, the event carries their hashes."""
        state = await self._episode(input.episode_id)
        if CandidatesEmbedded.event_type not in state.event_types:
            texts = [c.text for c in state.candidates]
            embedder = self.embedders(input.options)
            vectors = (
                await adapter_call(input.options.retry, embedder.embed(texts, heartbeat=activity.heartbeat))
                if texts
                else []
            )
            refs = [
                EmbeddingRef(
                    candidate_id=c.candidate_id,
                    vector_sha256=await self._put_vector(input.envelope.user_id, v),
                    dimension=len(v),
                )
                for c, v in zip(state.candidates, vectors, strict=True)
            ]
            payload = CandidatesEmbedded(embedder=embedder.name, embeddings=refs)
            event = saga_event(input.envelope, event_key(EMBED), payload, causation_id=input.causation_id)
            state = await self._append_step(input, event)
        dimension = next((ref.dimension for ref in state.embeddings.values()), 0)
        return EmbedResult(
            event_id=_step_event_id(input, EMBED),
            version=state.version,
            count=len(state.embeddings),
            dimension=dimension,
        )

    @activity_defn("memory_extraction.deduplicate_candidates")
    async def deduplicate_candidates(self, input: DeduplicateInput) -> DeduplicateResult:
        """``CandidatesDeduplicated`` against the user's live memories, read from the event store."""
        state = await self._episode(input.episode_id)
        if CandidatesDeduplicated.event_type not in state.event_types:
            summaries = [CandidateSummary.of(c) for c in state.candidates]
            existing = await self.index.live_memories(
                input.envelope.user_id, [s.content_hash for s in summaries]
            )
            plan = domain.plan_memories(input.envelope.workflow_id, [s.candidate_id for s in summaries])
            decision = domain.deduplicate(summaries, existing, {p.candidate_id: p.memory_id for p in plan})
            event = saga_event(input.envelope, event_key(DEDUP), decision, causation_id=input.causation_id)
            state = await self._append_step(input, event)
        return DeduplicateResult(
            event_id=_step_event_id(input, DEDUP),
            version=state.version,
            kept=state.kept,
            duplicates=len(state.candidates) - len(state.kept),
        )

    @activity_defn("memory_extraction.reconcile_candidates")
    async def reconcile_candidates(self, input: ReconcileInput) -> ReconcileResult:
        """``CandidatesReconciled``: the kept candidates against the current memories of their slots."""
        state = await self._episode(input.episode_id)
        if CandidatesReconciled.event_type not in state.event_types:
            kept = [c for c in state.candidates if c.candidate_id in set(state.kept)]
            slots = [c.slot for c in kept if c.slot is not None]
            current = await self.index.current_by_slot(input.envelope.user_id, slots)
            plan = domain.plan_memories(input.envelope.workflow_id, [c.candidate_id for c in kept])
            decision = reconcile(kept, current, {p.candidate_id: p.memory_id for p in plan})
            event = saga_event(
                input.envelope, event_key(RECONCILE), decision, causation_id=input.causation_id
            )
            state = await self._append_step(input, event)
        decided = state.reconciled
        assert decided is not None
        return ReconcileResult(
            event_id=_step_event_id(input, RECONCILE),
            version=state.version,
            position=state.position,
            kept=decided.kept,
            duplicates=len(decided.duplicates),
            ending=sorted({i.candidate_id for i in decided.invalidations} - set(decided.kept)),
            superseded=len(decided.supersessions),
            invalidated=len(decided.invalidations),
        )

    @activity_defn("memory_extraction.request_review")
    async def request_review(self, input: RequestReviewInput) -> Appended:
        """``ReviewRequested``: the saga now waits for a human."""
        payload = ReviewRequested(
            candidate_ids=input.candidate_ids, reasons=input.reasons, timeout_seconds=input.timeout_seconds
        )
        event = saga_event(input.envelope, event_key(REVIEW, 0), payload, causation_id=input.causation_id)
        state = await self._append_step(input, event)
        return Appended(event_id=str(event.event_id), version=state.version, position=state.position)

    @activity_defn("memory_extraction.decide_review")
    async def decide_review(self, input: DecideReviewInput) -> Appended:
        """``ReviewApproved`` / ``ReviewRejected`` of some or all candidates (``timed_out``: nobody did)."""
        payload: ReviewApproved | ReviewRejected
        if input.approved:
            payload = ReviewApproved(
                reviewer=input.reviewer, note=input.note, candidate_ids=input.candidate_ids
            )
        else:
            payload = ReviewRejected(
                reviewer=input.reviewer,
                reason=input.note or "rejected",
                timed_out=input.timed_out,
                candidate_ids=input.candidate_ids,
            )
        key = event_key(REVIEW, input.index)
        event = saga_event(input.envelope, key, payload, causation_id=input.causation_id)
        state = await self._append_step(input, event)
        return Appended(event_id=str(event.event_id), version=state.version, position=state.position)

    @activity_defn("memory_extraction.store_memories")
    async def store_memories(self, input: StoreMemoriesInput) -> StoreResult:
        """One ``MemoryCreated`` per planned memory, each in its own new stream ``memory-<id>``;
        then ``MemorySuperseded`` / ``MemoryInvalidated`` in the streams of the memories that
        reconciliation ended (only for approved candidates, and only while still current)."""
        state = await self._episode(input.episode_id)
        for planned in input.memories:
            payload = domain.memory_created(state, planned, input.envelope.user_id)
            key = event_key(STORE, planned.candidate_id)
            event = saga_event(input.envelope, key, payload, causation_id=input.causation_id)
            await self.store.append(memory_stream(planned.memory_id), [event], expected_version=NO_STREAM)
        result = StoreResult(memory_ids=[p.memory_id for p in input.memories])
        for ending in domain.endings(state, input.memories, input.approved, input.envelope.user_id):
            if await self._end_memory(input, ending):
                ended = result.superseded if isinstance(ending, MemorySuperseded) else result.invalidated
                ended.append(ending.memory_id)
        return result

    @activity_defn("memory_extraction.complete_extraction")
    @records_outcome("completed")
    async def complete_extraction(self, input: CompleteInput) -> Appended:
        """``ExtractionCompleted`` with the counts."""
        payload = ExtractionCompleted(
            candidates=input.candidates,
            duplicates=input.duplicates,
            memories_created=len(input.memory_ids),
            memory_ids=input.memory_ids,
        )
        event = saga_event(input.envelope, event_key(COMPLETE), payload, causation_id=input.causation_id)
        state = await self._append_step(input, event)
        return Appended(event_id=str(event.event_id), version=state.version, position=state.position)

    @activity_defn("memory_extraction.retract_memories", compensation=True)
    async def retract_memories(self, input: RetractMemoriesInput) -> RetractResult:
        """Compensation: ``MemoryReinstated`` for every memory the store step ended, then
        ``MemoryRetracted`` for every planned memory that was created (others: no-op)."""
        result = RetractResult()
        if input.episode_id is not None:
            await self._reinstate(input, result)
        for planned in input.memories:
            stream = memory_stream(planned.memory_id)
            events = await self.store.read_stream(stream)
            if not any(str(e.event_id) == planned.created_event_id for e in events):
                continue  # the store step never created it: nothing to undo
            payload = MemoryRetracted(
                memory_id=planned.memory_id,
                user_id=input.envelope.user_id,
                compensates_event_id=planned.created_event_id,
                reason=input.reason,
            )
            key = event_key(COMPENSATE, f"retract:{planned.candidate_id}")
            retraction = saga_event(input.envelope, key, payload, causation_id=input.causation_id)
            if all(e.event_id != retraction.event_id for e in events):
                await self.store.append(stream, [retraction], expected_version=len(events))
                await failpoint("compensation.after_first")
            result.retracted_memory_ids.append(planned.memory_id)
            result.retracted_event_ids.append(planned.created_event_id)
        return result

    @activity_defn("memory_extraction.compensate_extraction", compensation=True)
    @records_outcome("compensated")
    async def compensate_extraction(self, input: CompensateExtractionInput) -> CompensateResult:
        """Compensation: ``ExtractionCompensated``.

        When the saga recorded nothing (it failed at ``record``), the request's
        ``ExtractionRequested`` comes first, so that the failed request stays visible (``memsaga
        extractions``) with its reason; without the request in the input (older runs), a no-op.
        """
        state = await self._episode(input.episode_id)
        stream = episode_stream(input.episode_id)
        first: list[NewEvent] = []
        requested_event_id = state.requested_event_id
        if requested_event_id is None:
            if input.source is None or input.options is None:
                return CompensateResult(event_id=None)
            first = [_requested(input.envelope, input.episode_id, input.source, input.options)]
            requested_event_id = str(first[0].event_id)
        payload = ExtractionCompensated(
            reason=input.reason,
            failed_step=input.failed_step,
            retracted_memory_ids=input.retracted_memory_ids,
            compensates_event_ids=[requested_event_id, *input.retracted_event_ids],
            reinstated_memory_ids=input.reinstated_memory_ids,
        )
        # A saga that recorded nothing has the request as its last cause: hang under its event.
        nothing_before = input.causation_id == input.envelope.workflow_id
        causation_id = requested_event_id if nothing_before else input.causation_id
        event = saga_event(input.envelope, event_key(COMPENSATE), payload, causation_id=causation_id)
        # Nothing recorded: the stream must still be new (a late record attempt makes this one retry).
        await self.store.append(stream, [*first, event], expected_version=NO_STREAM if first else ANY)
        await failpoint("compensation.after_first")
        return CompensateResult(event_id=str(event.event_id))

    @activity_defn("memory_extraction.record_compensation_failed", compensation=True)
    @records_outcome("compensation_failed")
    async def record_compensation_failed(self, input: RecordCompensationFailedInput) -> Appended:
        """``CompensationFailed``: a compensation gave up; a human must finish undoing the saga."""
        payload = CompensationFailed(step=input.step, error=input.error)
        key = event_key(COMPENSATE, f"failed:{input.step}")
        event = saga_event(input.envelope, key, payload, causation_id=input.causation_id)
        result = await self.store.append(episode_stream(input.episode_id), [event], expected_version=ANY)
        return Appended(
            event_id=str(event.event_id), version=result.last_version, position=result.positions[-1]
        )

    async def _end_memory(
        self, input: StoreMemoriesInput, ending: MemorySuperseded | MemoryInvalidated
    ) -> bool:
        """Append ``ending`` to its memory's stream unless it is there already or the memory is
        no longer current (another saga or the user changed it since reconciliation); a change
        racing this append is read and decided again."""
        stream = memory_stream(ending.memory_id)
        key = domain.ending_key(ending.memory_id)
        for attempt in range(3):
            events = await self.store.read_stream(stream)
            event = saga_event(input.envelope, key, ending, causation_id=input.causation_id)
            if any(e.event_id == event.event_id for e in events):
                return True
            current = memory_state(events)
            if current is None or not current.is_current:
                return False
            if current.valid_from is not None and ending.valid_to < current.valid_from:
                clamped = ending.model_copy(
                    update={"valid_to": current.valid_from}
                )  # never ends before it began
                event = saga_event(input.envelope, key, clamped, causation_id=input.causation_id)
            try:
                await self.store.append(stream, [event], expected_version=len(events))
            except WrongExpectedVersion:
                if attempt == 2:
                    raise
                continue
            return True
        return False

    async def _reinstate(self, input: RetractMemoriesInput, result: RetractResult) -> None:
        """``MemoryReinstated`` for each memory this saga's store step ended (found by event id)."""
        state = await self._episode(input.episode_id or "")
        decided = state.reconciled
        if decided is None:
            return
        ended = [s.memory_id for s in decided.supersessions] + [i.memory_id for i in decided.invalidations]
        for memory_id in dict.fromkeys(ended):
            stream = memory_stream(memory_id)
            events = await self.store.read_stream(stream)
            ending_id = domain.derived_id(input.envelope.workflow_id, domain.ending_key(memory_id))
            if all(e.event_id != ending_id for e in events):
                continue  # the store step never ended it
            payload = MemoryReinstated(
                memory_id=memory_id,
                user_id=input.envelope.user_id,
                compensates_event_id=str(ending_id),
                reason=input.reason,
            )
            key = event_key(COMPENSATE, f"reinstate:{memory_id}")
            reinstated = saga_event(input.envelope, key, payload, causation_id=input.causation_id)
            if all(e.event_id != reinstated.event_id for e in events):
                await self.store.append(stream, [reinstated], expected_version=len(events))
                await failpoint("compensation.after_first")
            result.reinstated_memory_ids.append(memory_id)
            result.reinstated_event_ids.append(str(ending_id))

    async def _episode(self, episode_id: str) -> EpisodeState:
        return domain.episode_state(await self.store.read_stream(episode_stream(episode_id)))

    async def _append_step(self, input: StepInput, event: NewEvent) -> EpisodeState:
        """Append right after the previous step's events, and return the episode's new state."""
        await self.store.append(
            episode_stream(input.episode_id), [event], expected_version=input.expected_version
        )
        return await self._episode(input.episode_id)

    async def _put_vector(self, user_id: str, vector: list[float]) -> str:
        return await self.blobs.put(vector_to_bytes(vector), user_id=user_id)

    async def _text(self, state: EpisodeState, user_id: str) -> str:
        if state.text is not None:
            return state.text
        return (await self.blobs.get(state.text_sha256 or "", user_id=user_id)).decode("utf-8")

    async def _episode_text(self, input: RecordEpisodeInput) -> tuple[str | None, str, int]:
        """``(inline text or None, its address or sha256, its size in bytes)``; long text goes to the
        blob store, sealed with the user's key."""
        user_id = input.envelope.user_id
        if input.text is None:
            data = await self.blobs.get(input.text_sha256 or "", user_id=user_id)
            return None, input.text_sha256 or sha256_hex(data), len(data)
        data = input.text.encode("utf-8")
        if len(data) > domain.INLINE_TEXT_LIMIT:
            return None, await self.blobs.put(data, user_id=user_id), len(data)
        return input.text, sha256_hex(data), len(data)


def _requested(env: Envelope, episode_id: str, source: str, options: ExtractionOptions) -> NewEvent:
    """The saga's first event, ``ExtractionRequested`` (caused by the request: the workflow id)."""
    requested = ExtractionRequested(
        workflow_id=env.workflow_id,
        episode_id=episode_id,
        source=source,
        review_requested=options.review,
        extractor=options.extractor,
        embedder=options.embedder,
    )
    return saga_event(env, event_key(RECORD, 0), requested, causation_id=env.workflow_id)


def _step_event_id(input: StepInput, step: str) -> str:
    return str(domain.derived_id(input.envelope.workflow_id, event_key(step)))
