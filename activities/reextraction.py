"""Activities of re-extraction (sagas/reextraction.py): record the request, list the completed
episodes, and re-extract one episode (extract, embed, decide, apply).

Event ids derive from the workflow id and a key, so a retried activity re-appends identical
events, which the store keeps once; an episode whose decision is recorded is never sent to the
extractor again (an LLM may answer differently), its decision is applied again instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from activities.errors import activity_defn, adapter_call
from activities.memory_extraction import ExtractionPorts
from eventstore import (
    ANY,
    NO_STREAM,
    EventPayload,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from eventstore.errors import DataErased, UserWasForgotten
from sagas import reextraction as rx
from sagas.forgetting import UserForgetRequested, UserForgotten, user_stream
from sagas.memory_extraction import domain
from sagas.memory_extraction.domain import EpisodeState, ExtractionOptions, derived_id
from sagas.memory_extraction.embedders import vector_to_bytes
from sagas.memory_extraction.events import (
    Candidate,
    EmbeddingRef,
    ExtractionCompleted,
    MemoryCreated,
    MemoryRetracted,
    episode_stream,
    memory_stream,
)
from sagas.memory_extraction.lifecycle import memory_state
from sagas.memory_extraction.reconcile import reconcile

_SCAN = 1000
"""``ExtractionCompleted`` events read from the store per round trip."""
PAGE = 100
"""Episodes per page of :meth:`ReextractionActivities.list_episodes` (the workflow's history stays small)."""


_FORGETTING = frozenset({UserForgetRequested.event_type, UserForgotten.event_type})


class UserBeingForgotten(Exception):
    """The user's forget was asked for while the episode was re-extracted: it stops writing."""


class Step(BaseModel):
    """What every step of one re-extraction workflow knows."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    occurred_at: datetime


class RecordRequestInput(BaseModel):
    step: Step
    request: rx.ReextractionRequest


class RequestRecorded(BaseModel):
    event_id: str
    episodes: int


class ListEpisodesInput(BaseModel):
    request: rx.ReextractionRequest
    after_position: int = 0
    limit: int = PAGE


class RecordCompletionInput(BaseModel):
    step: Step
    request: rx.ReextractionRequest
    causation_id: str
    done: int
    failed: list[str]


class ReextractEpisodeInput(BaseModel):
    step: Step
    job: rx.EpisodeJob


class RecordedOutcomeInput(BaseModel):
    workflow_id: str
    episode_id: str


class ReextractionActivities(ExtractionPorts):
    """Re-extraction's activities over injected stores and adapter factories (``memsaga.bootstrap``)."""

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.record_request,
            self.list_episodes,
            self.reextract_episode,
            self.recorded_outcome,
            self.record_completion,
        ]

    @activity_defn("reextraction.record_request")
    async def record_request(self, input: RecordRequestInput) -> RequestRecorded:
        """``ReextractionRequested``, with the number of completed episodes it covers."""
        request = input.request
        stream = rx.reextraction_stream(request.request_id)
        existing = await self.store.read_stream(stream)
        if existing:  # a retry, or a continued run: the request is recorded once
            return RequestRecorded(
                event_id=str(existing[0].event_id), episodes=existing[0].payload["episodes"]
            )
        count, after = 0, 0
        while page := await self.store.read_type(
            ExtractionCompleted.event_type, user_id=request.user_id, after_position=after, limit=_SCAN
        ):
            count += sum(1 for e in page if _completed_episode(e))
            after = page[-1].position
        payload = rx.ReextractionRequested(
            request_id=request.request_id,
            scope="all" if request.user_id is None else "user",
            user_id=request.user_id,
            extractor=request.extractor,
            embedder=request.embedder,
            episodes=count,
            requested_by=request.requested_by,
        )
        event = NewEvent.of(
            payload,
            event_id=derived_id(input.step.workflow_id, "request"),
            correlation_id=input.step.workflow_id,
            causation_id=input.step.workflow_id,
            user_id=request.user_id,
            occurred_at=input.step.occurred_at,
            metadata={"workflow_id": input.step.workflow_id, "saga_event": "request"},
        )
        await self.store.append(stream, [event], expected_version=NO_STREAM)
        return RequestRecorded(event_id=str(event.event_id), episodes=count)

    @activity_defn("reextraction.record_completion")
    async def record_completion(self, input: RecordCompletionInput) -> str:
        """``ReextractionCompleted`` (its event id), naming the vectors' model and dimension: the
        search read model switches the request's scope to it when no episode failed."""
        request = input.request
        options = ExtractionOptions(
            extractor=request.extractor, embedder=request.embedder, retry=request.retry
        )
        embedder = self.embedders(options)
        payload = rx.ReextractionCompleted(
            request_id=request.request_id,
            scope="all" if request.user_id is None else "user",
            user_id=request.user_id,
            embedder=request.embedder,
            embedder_name=embedder.name,
            dimension=embedder.dimension,
            done=input.done,
            failed=input.failed,
        )
        event = NewEvent.of(
            payload,
            event_id=derived_id(input.step.workflow_id, "completed"),
            correlation_id=input.step.workflow_id,
            causation_id=input.causation_id,
            user_id=request.user_id,
            occurred_at=input.step.occurred_at,
            metadata={"workflow_id": input.step.workflow_id, "saga_event": "completed"},
        )
        await self.store.append(rx.reextraction_stream(request.request_id), [event], expected_version=ANY)
        return str(event.event_id)

    @activity_defn("reextraction.list_episodes")
    async def list_episodes(self, input: ListEpisodesInput) -> rx.EpisodePage:
        """The next completed episodes after ``after_position`` (of the user, when one is named)."""
        found: list[rx.EpisodeRef] = []
        after = input.after_position
        while page := await self.store.read_type(
            ExtractionCompleted.event_type, user_id=input.request.user_id, after_position=after, limit=_SCAN
        ):
            for event in page:
                if _completed_episode(event):
                    episode_id = event.stream_id.removeprefix("episode-")
                    found.append(rx.EpisodeRef(episode_id=episode_id, user_id=event.user_id or ""))
                    if len(found) == input.limit:
                        return rx.EpisodePage(episodes=found, next_position=event.position)
            after = page[-1].position
        return rx.EpisodePage(episodes=found, next_position=None)

    @activity_defn("reextraction.reextract_episode")
    async def reextract_episode(self, input: ReextractEpisodeInput) -> rx.EpisodeOutcome:
        """Decide what the new adapters change about one episode's memories, record it, apply it."""
        job, episode_id, user_id = input.job, input.job.episode.episode_id, input.job.episode.user_id
        if await self._forgetting(user_id):
            return rx.EpisodeOutcome(episode_id=episode_id, skipped="forgotten")
        state = domain.episode_state(await self.store.read_stream(episode_stream(episode_id)))
        if state.episode_id is None:
            return rx.EpisodeOutcome(episode_id=episode_id, skipped="not_found")
        stream = rx.episode_decision_stream(input.step.workflow_id)
        try:
            await self._before_writing(user_id)
            recorded = await self.store.read_stream(stream)
            if recorded:
                decision = rx.EpisodeReextracted.model_validate(recorded[0].payload)
            else:
                decision = await self._decide(input, state)
                event = self._event(input, "decide", decision, causation_id=job.causation_id)
                await self._before_writing(user_id)
                await self.store.append(stream, [event], expected_version=NO_STREAM)
            await self._apply(input, state, decision)
        except (UserBeingForgotten, UserWasForgotten, DataErased):  # nothing more is written
            return rx.EpisodeOutcome(episode_id=episode_id, skipped="forgotten")
        return rx.outcome_of(decision)

    @activity_defn("reextraction.recorded_outcome")
    async def recorded_outcome(self, input: RecordedOutcomeInput) -> rx.EpisodeOutcome:
        """What an episode's saga under this request decided before (a resumed request counts it)."""
        recorded = await self.store.read_stream(rx.episode_decision_stream(input.workflow_id))
        if not recorded:
            return rx.EpisodeOutcome(episode_id=input.episode_id, skipped="forgotten")
        return rx.outcome_of(rx.EpisodeReextracted.model_validate(recorded[0].payload))

    async def _decide(self, input: ReextractEpisodeInput, state: EpisodeState) -> rx.EpisodeReextracted:
        job, user_id = input.job, input.job.episode.user_id
        options = ExtractionOptions(extractor=job.extractor, embedder=job.embedder, retry=job.retry)
        text = await self._text(state, user_id)
        extractor = self.extractors(options)
        candidates = await adapter_call(job.retry, extractor.extract(text, heartbeat=activity.heartbeat))
        embedder = self.embedders(options)
        vectors = (
            await adapter_call(
                job.retry, embedder.embed([c.text for c in candidates], heartbeat=activity.heartbeat)
            )
            if candidates
            else []
        )
        refs = [
            EmbeddingRef(
                candidate_id=c.candidate_id,
                vector_sha256=await self.blobs.put(vector_to_bytes(v), user_id=user_id),
                dimension=len(v),
            )
            for c, v in zip(candidates, vectors, strict=True)
        ]
        mine = await self._episode_memories(user_id, state.episode_id or "")
        known = await self._known(user_id, candidates, {m.memory_id for m in mine})
        planned = {
            c.candidate_id: rx.ReextractedMemory(
                candidate_id=c.candidate_id,
                memory_id=str(derived_id(input.step.workflow_id, f"memory:{c.candidate_id}")),
                created_event_id=str(derived_id(input.step.workflow_id, f"create:{c.candidate_id}")),
            )
            for c in candidates
        }
        unmatched = rx.unmatched(candidates, mine)
        slots = [c.slot for c in unmatched if c.slot is not None]
        current = [
            m
            for m in await self.index.current_by_slot(user_id, slots)
            if m.memory_id not in {x.memory_id for x in mine}
        ]
        reconciled = reconcile(unmatched, current, {k: v.memory_id for k, v in planned.items()})
        return rx.decide(
            request_id=job.request_id,
            episode_id=state.episode_id or "",
            extractor=extractor.name,
            embedder=embedder.name,
            candidates=candidates,
            embeddings=refs,
            episode_memories=mine,
            known=known,
            reconciled=reconciled,
            planned=planned,
        )

    async def _apply(
        self, input: ReextractEpisodeInput, state: EpisodeState, decision: rx.EpisodeReextracted
    ) -> None:
        """``MemoryCreated`` for each new memory; ``MemoryRetracted`` for each retired one still live."""
        user_id = input.job.episode.user_id
        refs = {r.candidate_id: r for r in decision.embeddings}
        reextracted = state.model_copy(
            update={"candidates": decision.candidates, "embeddings": refs, "embedder": decision.embedder}
        )
        for new in decision.created:
            planned = domain.PlannedMemory(
                candidate_id=new.candidate_id, memory_id=new.memory_id, created_event_id=new.created_event_id
            )
            payload = domain.memory_created(reextracted, planned, user_id)
            event = self._event(
                input, f"create:{new.candidate_id}", payload, causation_id=input.job.causation_id
            )
            events = await self.store.read_stream(memory_stream(new.memory_id))
            await self._before_writing(user_id)
            if not events:
                await self.store.append(memory_stream(new.memory_id), [event], expected_version=NO_STREAM)
        reason = rx.retire_reason(decision.request_id, decision.extractor, decision.episode_id)
        for retired in decision.retired:
            await self._retire(input, retired, reason)

    async def _retire(self, input: ReextractEpisodeInput, retired: rx.RetiredMemory, reason: str) -> None:
        stream = memory_stream(retired.memory_id)
        payload = MemoryRetracted(
            memory_id=retired.memory_id,
            user_id=input.job.episode.user_id,
            compensates_event_id=retired.created_event_id,
            reason=reason,
            retracted_by=rx.RETRACTED_BY + input.job.request_id,
        )
        event = self._event(
            input, f"retire:{retired.memory_id}", payload, causation_id=input.job.causation_id
        )
        for attempt in range(3):
            events = await self.store.read_stream(stream)
            if any(e.event_id == event.event_id for e in events):
                return
            current = memory_state(events)
            if current is None or current.status == "retracted":
                return  # retracted meanwhile (by someone else): already what we want
            try:
                await self._before_writing(input.job.episode.user_id)
                await self.store.append(stream, [event], expected_version=len(events))
                return
            except WrongExpectedVersion:
                if attempt == 2:
                    raise

    async def _episode_memories(self, user_id: str, episode_id: str) -> list[rx.EpisodeMemory]:
        created = await self.store.find_events(
            MemoryCreated.event_type, payload_field="episode_id", values=[episode_id], user_id=user_id
        )
        return [await self._memory(e) for e in created]

    async def _memory(self, created: RecordedEvent) -> rx.EpisodeMemory:
        events = await self.store.read_stream(memory_stream(created.payload["memory_id"]))
        state = memory_state(events)
        assert state is not None
        retracted_by = next(
            (e.payload.get("retracted_by") for e in events if e.event_type == MemoryRetracted.event_type),
            None,
        )
        return rx.EpisodeMemory(
            memory_id=state.memory_id,
            created_event_id=str(created.event_id),
            content_hash=created.payload["content_hash"],
            slot=state.slot,
            value=state.value,
            polarity=state.polarity,
            status=state.status,
            retracted_by=retracted_by,
        )

    async def _known(self, user_id: str, candidates: Sequence[Candidate], mine: set[str]) -> rx.Known:
        hashes = sorted({c.content_hash for c in candidates})
        if not hashes:
            return rx.Known()
        live = await self.index.live_memories(user_id, hashes)
        created = await self.store.find_events(
            MemoryCreated.event_type, payload_field="content_hash", values=hashes, user_id=user_id
        )
        retracted = [m for e in created if (m := await self._memory(e)).memory_id not in mine]
        return rx.Known(
            live_elsewhere={h: m for h, m in live.items() if m not in mine},
            retracted_hashes=sorted({m.content_hash for m in retracted if rx.retired_for_good(m)}),
        )

    async def _forgetting(self, user_id: str) -> bool:
        """Whether a forget of the user was asked for (or is done): then nothing of theirs is written."""
        events = await self.store.read_stream(user_stream(user_id))
        return any(e.event_type in _FORGETTING for e in events)

    async def _before_writing(self, user_id: str) -> None:
        """Before each write: let Temporal deliver a cancellation (a forget cancels the saga), and
        stop when the user's forget was asked for meanwhile.

        :raises UserBeingForgotten: it was.
        """
        if activity.in_activity():
            activity.heartbeat()
        if await self._forgetting(user_id):
            raise UserBeingForgotten(user_id)

    async def _text(self, state: EpisodeState, user_id: str) -> str:
        if state.text is not None:
            return state.text
        return (await self.blobs.get(state.text_sha256 or "", user_id=user_id)).decode("utf-8")

    def _event(
        self, input: ReextractEpisodeInput, key: str, payload: EventPayload, *, causation_id: str
    ) -> NewEvent:
        workflow_id = input.step.workflow_id
        return NewEvent.of(
            payload,
            event_id=derived_id(workflow_id, key),
            correlation_id=rx.request_workflow_id(input.job.request_id),
            causation_id=causation_id,
            user_id=input.job.episode.user_id,
            occurred_at=input.step.occurred_at,
            metadata={"workflow_id": workflow_id, "saga_event": key},
        )


def _completed_episode(event: RecordedEvent) -> bool:
    """An ``ExtractionCompleted`` of an episode's saga (read by type and user from the store)."""
    return event.stream_id.startswith("episode-")
