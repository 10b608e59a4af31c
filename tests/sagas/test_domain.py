"""Pure decisions of the memory-extraction saga (sagas/memory_extraction/domain.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from eventstore import InMemoryEventStore
from memsaga.bootstrap import build_registry
from sagas.memory_extraction import domain
from sagas.memory_extraction.domain import (
    SAGA_NAMESPACE,
    CandidateSummary,
    Envelope,
    ExtractionRequest,
    PlannedMemory,
    deduplicate,
    derived_id,
    episode_state,
    plan_memories,
    request_problems,
    review_needed,
    saga_event,
)
from sagas.memory_extraction.events import (
    Candidate,
    CandidatesEmbedded,
    CandidatesExtracted,
    EmbeddingRef,
    EpisodeRecorded,
    ExtractionRequested,
    MemoryCreated,
    MemoryCreatedV1,
    MemoryRetracted,
    MemoryRetractedV1,
)

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ENVELOPE = Envelope(workflow_id="extract-k", correlation_id="corr", user_id="u-1", occurred_at=NOW)


def summary(
    cid: str, kind: str = "fact", *, sensitive: bool = False, reason: str | None = None
) -> CandidateSummary:
    return CandidateSummary.model_validate(
        {
            "candidate_id": cid,
            "kind": kind,
            "content_hash": f"h-{cid}",
            "sensitive": sensitive,
            "sensitivity_reason": reason,
        }
    )


def test_ids_derive_from_the_workflow_id_and_the_step() -> None:
    assert derived_id("extract-k", "record:0") == uuid.uuid5(SAGA_NAMESPACE, "extract-k:record:0")
    assert derived_id("extract-k", "record:0") == derived_id("extract-k", "record:0")
    assert derived_id("extract-k", "record:0") != derived_id("extract-k", "record:1")
    assert derived_id("extract-k", "record:0") != derived_id("extract-j", "record:0")
    assert domain.episode_id_for("extract-k") == str(derived_id("extract-k", "episode"))


def test_planned_memories_have_stable_ids_per_candidate() -> None:
    plan = plan_memories("extract-k", ["a", "b"])
    assert plan == plan_memories("extract-k", ["a", "b"])
    assert [p.candidate_id for p in plan] == ["a", "b"]
    assert plan[0].memory_id == str(derived_id("extract-k", "memory:a"))
    assert plan[0].created_event_id == str(derived_id("extract-k", "store:a"))
    assert len({p.memory_id for p in plan} | {p.created_event_id for p in plan}) == 4


def test_no_review_without_sensitive_candidates_or_a_request() -> None:
    assert review_needed([summary("a"), summary("b", "preference")], requested=False) == ([], [])


def test_sensitive_kinds_and_flags_need_review_with_reasons() -> None:
    candidates = [
        summary("a"),
        summary("b", "health", sensitive=True, reason="health"),
        summary("c", "fact", sensitive=True, reason="religion"),
        summary("d", "identifier"),  # a sensitive kind even if the extractor forgot the flag
    ]
    ids, reasons = review_needed(candidates, requested=False)
    assert ids == ["b", "c", "d"]
    assert reasons == [
        "candidate b is sensitive (health)",
        "candidate c is sensitive (religion)",
        "candidate d is sensitive (identifier)",
    ]


def test_a_requested_review_covers_every_candidate_but_only_if_there_are_any() -> None:
    ids, reasons = review_needed([summary("a"), summary("b", "finance")], requested=True)
    assert ids == ["a", "b"]
    assert reasons == ["review requested by the client", "candidate b is sensitive (finance)"]
    assert review_needed([], requested=True) == ([], [])


def test_deduplicate_skips_existing_memories_and_repeats_within_the_episode() -> None:
    candidates = [summary("a"), summary("b"), summary("c").model_copy(update={"content_hash": "h-a"})]
    decision = deduplicate(candidates, {"h-b": "memory-old"}, {"a": "m-a", "b": "m-b", "c": "m-c"})

    assert decision.kept == ["a"]
    assert [(s.candidate_id, s.existing_memory_id) for s in decision.skipped] == [
        ("b", "memory-old"),
        ("c", "m-a"),
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"user_id": "u"}, "exactly one of text"),
        ({"user_id": "u", "text": "x", "text_sha256": "a" * 64}, "exactly one of text"),
        ({"user_id": " ", "text": "x"}, "user_id must not be empty"),
        ({"user_id": "u", "text": "  "}, "text must not be empty"),
        ({"user_id": "u", "text_sha256": "XYZ"}, "64 lowercase hex"),
    ],
)
def test_request_problems(fields: dict[str, str], problem: str) -> None:
    assert any(problem in p for p in request_problems(ExtractionRequest.model_validate(fields)))


def test_a_good_request_has_no_problems() -> None:
    assert request_problems(ExtractionRequest(user_id="u", text="I love tea.")) == []
    assert request_problems(ExtractionRequest(user_id="u", text_sha256="0" * 64)) == []


def test_saga_events_carry_derived_id_time_correlation_causation_and_key() -> None:
    payload = EpisodeRecorded(episode_id="e", source="chat", text="hi", text_sha256="0" * 64, text_bytes=2)
    event = saga_event(
        ENVELOPE.model_copy(update={"metadata": {"traceparent": "00-x"}}),
        "record:1",
        payload,
        causation_id="cause",
    )

    assert event.event_id == derived_id("extract-k", "record:1")
    assert (event.correlation_id, event.causation_id, event.user_id, event.occurred_at) == (
        "corr",
        "cause",
        "u-1",
        NOW,
    )
    assert event.metadata == {"traceparent": "00-x", "workflow_id": "extract-k", "saga_event": "record:1"}
    assert event == saga_event(
        ENVELOPE.model_copy(update={"metadata": {"traceparent": "00-x"}}),
        "record:1",
        payload,
        causation_id="cause",
    )


async def test_episode_state_folds_the_stream() -> None:
    store = InMemoryEventStore(build_registry())
    candidate = Candidate(
        candidate_id="a",
        text="User is allergic to peanuts",
        kind="health",
        content_hash="h-a",
        sensitive=True,
        sensitivity_reason="health",
    )
    payloads = [
        ExtractionRequested(
            workflow_id="extract-k", episode_id="e", source="chat", extractor="rules", embedder="hashing"
        ),
        EpisodeRecorded(episode_id="e", source="mail", text=None, text_sha256="0" * 64, text_bytes=99999),
        CandidatesExtracted(extractor="rules", candidates=[candidate]),
        CandidatesEmbedded(
            embedder="hashing-v1", embeddings=[EmbeddingRef(candidate_id="a", vector_sha256="v", dimension=8)]
        ),
    ]
    events = [saga_event(ENVELOPE, f"k:{i}", p, causation_id="c") for i, p in enumerate(payloads)]
    await store.append("episode-e", events)

    state = episode_state(await store.read_stream("episode-e"))
    assert (state.episode_id, state.requested_event_id) == ("e", str(events[0].event_id))
    assert (state.text, state.text_sha256, state.source, state.version) == (None, "0" * 64, "mail", 4)
    assert state.candidates == [candidate] and state.embeddings["a"].vector_sha256 == "v"

    memory = domain.memory_created(
        state, PlannedMemory(candidate_id="a", memory_id="m", created_event_id="x"), "u-1"
    )
    assert (memory.memory_id, memory.episode_id, memory.text, memory.kind) == (
        "m",
        "e",
        candidate.text,
        "health",
    )
    assert (memory.vector_sha256, memory.dimension, memory.sensitive, memory.source) == ("v", 8, True, "mail")
    assert memory.embedder == "hashing-v1"  # the vector's model travels with it


async def test_a_version_1_memory_reads_as_the_latest_version_with_an_unknown_embedder_and_no_slot() -> None:
    store = InMemoryEventStore(build_registry())
    v1 = MemoryCreatedV1(
        memory_id="m",
        user_id="u-1",
        episode_id="e",
        text="User lives in Utrecht",
        kind="identity",
        content_hash="h",
        vector_sha256="v",
        dimension=256,
        source="chat",
    )
    await store.append("memory-m", [saga_event(ENVELOPE, "k:m", v1, causation_id="c")])

    [event] = await store.read_stream("memory-m")
    assert (event.event_version, event.stored_version) == (3, 1)
    memory = MemoryCreated.model_validate(event.payload)
    assert (memory.text, memory.vector_sha256, memory.embedder) == ("User lives in Utrecht", "v", None)
    assert (memory.slot, memory.value, memory.polarity, memory.valid_from) == (None, None, "holds", None)


async def test_a_version_1_retraction_reads_with_the_event_it_compensates() -> None:
    store = InMemoryEventStore(build_registry())
    v1 = MemoryRetractedV1(memory_id="m", user_id="u-1", retracts_event_id="created-1", reason="rejected")
    await store.append("memory-m", [saga_event(ENVELOPE, "k:r", v1, causation_id="c")])

    [event] = await store.read_stream("memory-m")
    assert (event.event_version, event.stored_version) == (2, 1)
    retracted = MemoryRetracted.model_validate(event.payload)
    assert (retracted.compensates_event_id, retracted.retracted_by) == ("created-1", None)


def test_a_planned_memory_of_an_unknown_candidate_is_a_named_error() -> None:
    state = domain.EpisodeState(episode_id="e")

    with pytest.raises(domain.CandidateNotInEpisode) as caught:
        domain.memory_created(
            state, PlannedMemory(candidate_id="a", memory_id="m", created_event_id="x"), "u"
        )
    assert (caught.value.candidate_id, caught.value.episode_id) == ("a", "e")
