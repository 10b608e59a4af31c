"""The saga's activities over the in-memory stores, with fake extractors and embedders.

These pin the idempotency rules: a retried activity re-appends identical events (kept once),
a step whose adapter may answer differently on a retry is not asked again, and a
compensation of a step that never took effect is a no-op.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.memory_extraction import MemoryExtractionActivities
from activities.memory_extraction_io import (
    CompensateExtractionInput,
    DeduplicateInput,
    EmbedInput,
    ExtractInput,
    RecordEpisodeInput,
    RetractMemoriesInput,
    StoreMemoriesInput,
)
from activities.memory_index import StoreMemoryIndex
from adapters.http_embedder import EmbedderUnavailable
from eventstore import InMemoryBlobStore, InMemoryEventStore, sha256_hex
from memsaga.bootstrap import build_registry
from sagas.memory_extraction.domain import (
    INLINE_TEXT_LIMIT,
    Envelope,
    ExtractionOptions,
    PlannedMemory,
    StepRetry,
    derived_id,
    episode_id_for,
    plan_memories,
)
from sagas.memory_extraction.embedders import HashingEmbedder, bytes_to_vector
from sagas.memory_extraction.events import Candidate, episode_stream, memory_stream
from sagas.memory_extraction.extractors import RuleBasedExtractor, make_candidate
from sagas.memory_extraction.ports import Heartbeat

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class CountingExtractor:
    """Answers differently on every call, like an LLM might."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        self.calls += 1
        return [make_candidate(f"User has answer number {self.calls}", "fact")]


class DownEmbedder:
    name = "down"
    dimension = 4

    def __init__(self, *, retryable: bool) -> None:
        self.retryable = retryable

    async def embed(self, texts: list[str], *, heartbeat: Heartbeat | None = None) -> list[list[float]]:
        raise EmbedderUnavailable("http://nowhere/v1/embeddings", "cannot connect", retryable=self.retryable)


class World:
    """The activities over in-memory stores, for one workflow id."""

    def __init__(self, extractor: object | None = None, embedder: object | None = None) -> None:
        self.store = InMemoryEventStore(build_registry())
        self.blobs = InMemoryBlobStore()
        self.extractor = extractor or RuleBasedExtractor()
        self.embedder = embedder or HashingEmbedder(8)
        self.acts = MemoryExtractionActivities(
            self.store,
            self.blobs,
            StoreMemoryIndex(self.store),
            lambda options: self.extractor,  # type: ignore[arg-type,return-value]
            lambda options: self.embedder,  # type: ignore[arg-type,return-value]
        )
        self.workflow_id = f"extract-{uuid.uuid4().hex[:8]}"
        self.episode_id = episode_id_for(self.workflow_id)
        self.envelope = Envelope(
            workflow_id=self.workflow_id, correlation_id="corr", user_id="u-1", occurred_at=NOW
        )
        self.version = 0
        self.cause = self.workflow_id

    def step(self) -> dict[str, Any]:
        return {
            "envelope": self.envelope,
            "episode_id": self.episode_id,
            "causation_id": self.cause,
            "expected_version": self.version,
        }

    async def run(self, activity: Callable[..., object], arg: object) -> object:
        result = await ActivityEnvironment().run(activity, arg)  # type: ignore[misc]
        if hasattr(result, "version"):
            self.version, self.cause = result.version, result.event_id
        return result

    async def record(
        self, text: str | None = "I love hiking. I live in Lisbon.", sha: str | None = None
    ) -> object:
        arg = RecordEpisodeInput(
            envelope=self.envelope,
            episode_id=self.episode_id,
            text=text,
            text_sha256=sha,
            source="chat",
            options=ExtractionOptions(),
        )
        return await self.run(self.acts.record_episode, arg)

    async def through_dedup(self) -> list[str]:
        await self.record()
        await self.run(self.acts.extract_candidates, ExtractInput(**self.step(), options=ExtractionOptions()))
        await self.run(self.acts.embed_candidates, EmbedInput(**self.step(), options=ExtractionOptions()))
        dedup = await self.run(self.acts.deduplicate_candidates, DeduplicateInput(**self.step()))
        return list(dedup.kept)  # type: ignore[attr-defined]

    async def episode(self) -> list[str]:
        return [e.event_type for e in await self.store.read_stream(episode_stream(self.episode_id))]


async def test_record_keeps_short_text_inline_and_a_retry_appends_nothing() -> None:
    world = World()
    first = await world.record()
    again = await world.record()

    assert first == again
    events = await world.store.read_stream(episode_stream(world.episode_id))
    assert [e.event_type for e in events] == ["ExtractionRequested", "EpisodeRecorded"]
    assert events[1].payload["text"] == "I love hiking. I live in Lisbon."
    assert events[0].causation_id == world.workflow_id and events[1].causation_id == str(events[0].event_id)


async def test_long_text_goes_to_the_blob_store() -> None:
    world = World()
    text = "I love hiking. " * (INLINE_TEXT_LIMIT // 10)
    await world.record(text)

    recorded = (await world.store.read_stream(episode_stream(world.episode_id)))[1].payload
    assert recorded["text"] is None and recorded["text_bytes"] == len(text.encode())
    assert (await world.blobs.get(recorded["text_sha256"])).decode() == text


async def test_an_episode_given_by_hash_is_read_from_the_blob_store() -> None:
    world = World()
    sha = await world.blobs.put(b"I live in Lisbon.")
    await world.record(None, sha)
    await world.run(world.acts.extract_candidates, ExtractInput(**world.step(), options=ExtractionOptions()))

    events = await world.store.read_stream(episode_stream(world.episode_id))
    assert events[1].payload["text_sha256"] == sha == sha256_hex(b"I live in Lisbon.")
    assert [c["text"] for c in events[2].payload["candidates"]] == ["User lives in Lisbon"]


async def test_a_retried_extraction_returns_what_was_recorded_without_asking_again() -> None:
    world = World(extractor=CountingExtractor())
    await world.record()
    arg = ExtractInput(**world.step(), options=ExtractionOptions())
    first = await world.run(world.acts.extract_candidates, arg)
    retried = await ActivityEnvironment().run(world.acts.extract_candidates, arg)

    assert retried == first and world.extractor.calls == 1  # type: ignore[attr-defined]
    assert (await world.episode()).count("CandidatesExtracted") == 1


async def test_embeddings_go_to_the_blob_store_by_hash() -> None:
    world = World()
    await world.through_dedup()

    events = await world.store.read_stream(episode_stream(world.episode_id))
    refs = events[3].payload["embeddings"]
    assert len(refs) == 2 and {r["dimension"] for r in refs} == {8}
    assert len(bytes_to_vector(await world.blobs.get(refs[0]["vector_sha256"]))) == 8


@pytest.mark.parametrize("retryable", [True, False])
async def test_an_unavailable_embedder_fails_the_attempt_retryable_as_it_says(retryable: bool) -> None:
    world = World(embedder=DownEmbedder(retryable=retryable))
    await world.record()
    await world.run(world.acts.extract_candidates, ExtractInput(**world.step(), options=ExtractionOptions()))

    with pytest.raises(ApplicationError) as caught:
        await world.run(world.acts.embed_candidates, EmbedInput(**world.step(), options=ExtractionOptions()))
    assert caught.value.type == "EmbedderUnavailable" and caught.value.non_retryable is not retryable


async def test_a_store_step_of_an_unknown_candidate_fails_for_good() -> None:
    world = World()
    await world.through_dedup()
    plan = [PlannedMemory(candidate_id="nope", memory_id="m", created_event_id="x")]

    with pytest.raises(ApplicationError) as caught:
        await world.run(world.acts.store_memories, StoreMemoriesInput(**world.step(), memories=plan))
    assert caught.value.type == "CandidateNotInEpisode" and caught.value.non_retryable


async def test_a_version_clash_fails_a_step_for_good() -> None:
    world = World()
    await world.record()
    world.version = 1  # stale: the stream is at version 2

    with pytest.raises(ApplicationError) as step:
        await world.run(
            world.acts.extract_candidates, ExtractInput(**world.step(), options=ExtractionOptions())
        )
    assert step.value.type == "WrongExpectedVersion" and step.value.non_retryable


async def test_dedup_reads_live_memories_from_the_event_store() -> None:
    earlier = World()
    kept = await earlier.through_dedup()
    plan = plan_memories(earlier.workflow_id, kept)
    await earlier.run(earlier.acts.store_memories, StoreMemoriesInput(**earlier.step(), memories=plan))

    later = World()
    later.store, later.blobs = earlier.store, earlier.blobs  # same user, same stores
    later.acts = earlier.acts
    assert await later.through_dedup() == []
    dedup = (await later.store.read_stream(episode_stream(later.episode_id)))[4].payload
    assert {s["existing_memory_id"] for s in dedup["skipped"]} == {p.memory_id for p in plan}


async def test_retraction_undoes_only_what_was_created_and_only_once() -> None:
    world = World()
    kept = await world.through_dedup()
    plan = plan_memories(world.workflow_id, kept)
    # The store step took effect for the first memory only (it failed after one append).
    await world.run(world.acts.store_memories, StoreMemoriesInput(**world.step(), memories=plan[:1]))
    retract = RetractMemoriesInput(
        envelope=world.envelope, memories=plan, reason="cancelled", causation_id="c"
    )

    first = await world.run(world.acts.retract_memories, retract)
    again = await world.run(world.acts.retract_memories, retract)

    assert first == again
    assert first.retracted_memory_ids == [plan[0].memory_id]  # type: ignore[attr-defined]
    assert first.retracted_event_ids == [plan[0].created_event_id]  # type: ignore[attr-defined]
    stream = await world.store.read_stream(memory_stream(plan[0].memory_id))
    assert [e.event_type for e in stream] == ["MemoryCreated", "MemoryRetracted"]
    assert stream[1].payload["compensates_event_id"] == str(stream[0].event_id)
    assert await world.store.read_stream(memory_stream(plan[1].memory_id)) == []
    assert await StoreMemoryIndex(world.store).live_memories("u-1", [stream[0].payload["content_hash"]]) == {}


async def test_compensating_a_saga_that_recorded_nothing_is_a_no_op() -> None:
    world = World()
    arg = CompensateExtractionInput(
        envelope=world.envelope,
        episode_id=world.episode_id,
        reason="failed",
        failed_step="record",
        retracted_memory_ids=[],
        retracted_event_ids=[],
        causation_id=world.workflow_id,
    )
    assert (await world.run(world.acts.compensate_extraction, arg)).event_id is None  # type: ignore[attr-defined]
    assert await world.episode() == []

    await world.record()
    done = await world.run(world.acts.compensate_extraction, arg)
    assert done == await world.run(world.acts.compensate_extraction, arg)
    events = await world.store.read_stream(episode_stream(world.episode_id))
    assert [e.event_type for e in events][-1] == "ExtractionCompensated"
    assert events[-1].payload["compensates_event_ids"] == [str(events[0].event_id)]


async def test_a_saga_that_failed_at_record_still_leaves_its_request_and_why() -> None:
    world = World()
    arg = CompensateExtractionInput(
        envelope=world.envelope,
        episode_id=world.episode_id,
        reason="step record failed: blob not found",
        failed_step="record",
        retracted_memory_ids=[],
        retracted_event_ids=[],
        causation_id=world.workflow_id,
        source="chat",
        options=ExtractionOptions(),
    )
    done = await world.run(world.acts.compensate_extraction, arg)
    assert done == await world.run(world.acts.compensate_extraction, arg)  # once, however retried

    events = await world.store.read_stream(episode_stream(world.episode_id))
    assert [e.event_type for e in events] == ["ExtractionRequested", "ExtractionCompensated"]
    assert events[0].event_id == derived_id(world.workflow_id, "record:0")  # the id record would write
    assert events[1].causation_id == str(events[0].event_id)
    assert events[1].payload["failed_step"] == "record"
    assert events[1].payload["reason"] == "step record failed: blob not found"
    assert events[1].payload["compensates_event_ids"] == [str(events[0].event_id)]


@pytest.mark.parametrize(
    ("attempt", "age_seconds", "gives_up"),
    [(1, 0.0, False), (2, 0.0, False), (3, 0.0, True), (2, 61.0, True), (1, 61.0, False)],
)
async def test_an_adapters_retryable_error_fails_the_step_once_its_budget_is_spent(
    attempt: int, age_seconds: float, gives_up: bool
) -> None:
    world = World(embedder=DownEmbedder(retryable=True))
    await world.record()
    await world.run(world.acts.extract_candidates, ExtractInput(**world.step(), options=ExtractionOptions()))
    options = ExtractionOptions(retry=StepRetry(maximum_attempts=3, adapter_retry_seconds=60.0))
    scheduled = datetime.now(UTC) - timedelta(seconds=age_seconds)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, scheduled_time=scheduled)

    with pytest.raises(ApplicationError) as caught:
        await env.run(world.acts.embed_candidates, EmbedInput(**world.step(), options=options))
    assert caught.value.type == "EmbedderUnavailable" and caught.value.non_retryable is gives_up
