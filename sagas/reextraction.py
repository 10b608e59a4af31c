"""Re-extraction: stored episodes run again through another extractor or embedder (docs/evolution.md).

One request (``ReextractionRequested``, stream ``reextraction-<request id>``) names a user or
every user and the adapters; one saga per completed episode decides, purely, what the new
candidates change about the memories that episode gave (:func:`decide`), records the decision
(``EpisodeReextracted``) and applies it through the normal lifecycle: a memory the new extractor
no longer finds is retracted with a reason, a new fact becomes a memory, a memory still found is
left untouched, and a memory someone retracted is never created again. No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore import EventPayload, SchemaRegistry
from sagas.memory_extraction.domain import CandidateSummary, StepRetry, derived_id, sensitivity_of
from sagas.memory_extraction.events import (
    Candidate,
    CandidatesReconciled,
    DuplicateSkipped,
    EmbeddingRef,
)
from sagas.memory_extraction.reconcile import same_value

WORKFLOW_PREFIX = "reextract-"
RETRACTED_BY = "reextraction:"
"""``MemoryRetracted.retracted_by`` of a memory a re-extraction retired: ``reextraction:<request id>``.
Only these may be found again by a later re-extraction; any other retraction is for good."""

Scope = Literal["user", "all"]
SkipReason = Literal["forgotten", "not_found"]


def reextraction_stream(request_id: str) -> str:
    """The stream of one re-extraction request (its ``ReextractionRequested``)."""
    return f"reextraction-{request_id}"


def request_workflow_id(request_id: str) -> str:
    """The one workflow id of a request: starting it again joins (or answers with) the first run."""
    return WORKFLOW_PREFIX + request_id


def episode_workflow_id(request_id: str, episode_id: str) -> str:
    """The one workflow id of one episode under one request: a re-submission starts nothing new."""
    return f"{WORKFLOW_PREFIX}{request_id}-{episode_id}"


def episode_decision_stream(workflow_id: str) -> str:
    """The stream of one episode's re-extraction (its ``EpisodeReextracted``)."""
    return f"reextraction-{derived_id(workflow_id, 'episode')}"


class ReextractionRequested(EventPayload):
    """Someone asked for stored episodes to be extracted again with the named adapters."""

    event_type = "ReextractionRequested"
    event_version = 1
    request_id: str
    scope: Scope
    user_id: str | None
    """The user (scope ``user``), an identifier kept verbatim like every event's ``user_id``."""
    extractor: str
    embedder: str
    episodes: int
    """Completed episodes found when the request was recorded."""
    requested_by: str | None = None


class ReextractedMemory(BaseModel):
    """A memory the re-extraction creates: the candidate, its id and the id of its ``MemoryCreated``."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    memory_id: str
    created_event_id: str


class RetiredMemory(BaseModel):
    """A memory of the episode the new extractor no longer finds."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    created_event_id: str


class MemoryVector(BaseModel):
    """The new embedder's vector of a memory left unchanged (for a search index of that model)."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    vector_sha256: str
    dimension: int


class EpisodeReextracted(EventPayload):
    """What re-extracting one episode decided (its memories: created, retired, left as they were)."""

    event_type = "EpisodeReextracted"
    event_version = 1
    request_id: str
    episode_id: str
    extractor: str
    embedder: str
    candidates: list[Candidate]
    embeddings: list[EmbeddingRef] = Field(default_factory=list)
    created: list[ReextractedMemory] = Field(default_factory=list)
    retired: list[RetiredMemory] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    """Memories of the episode the new extractor finds again: no event is written for them."""
    vectors: list[MemoryVector] = Field(default_factory=list)
    """The ``embedder``'s vectors of the ``unchanged`` memories (the matching candidate's), so that
    a search index of that model can serve them (docs/evolution.md); created ones carry theirs."""
    duplicates: list[DuplicateSkipped] = Field(default_factory=list)
    """New candidates the user already has as a current memory of another episode."""
    kept_retracted: list[str] = Field(default_factory=list)
    """Candidates whose memory someone retracted: it stays retracted."""
    conflicts: list[str] = Field(default_factory=list)
    """Candidates that would end a current memory: an old episode does not overrule what is known now."""
    held_sensitive: list[str] = Field(default_factory=list)
    """Sensitive new candidates: never stored without a human review (``memsaga extract --review``)."""


class ReextractionCompleted(EventPayload):
    """Every episode of the request has run: with none failed, each memory of its scope that is not
    retracted has a vector of ``embedder_name`` (created, or in ``EpisodeReextracted.vectors``),
    and the search read model serves the scope (the user, or every user) in that model."""

    event_type = "ReextractionCompleted"
    event_version = 1
    request_id: str
    scope: Scope
    user_id: str | None
    """The user (scope ``user``); ``None``: every user."""
    embedder: str
    """The embedder as requested (``hashing``, ``wordllama``, ``http``)."""
    embedder_name: str
    """The name its vectors are recorded with: ``hashing-v1``, ``wordllama:l2_supercat_256``,
    ``http:<model>``."""
    dimension: int
    done: int
    """Episodes done (re-extracted, skipped or failed)."""
    failed: list[str] = Field(default_factory=list)
    """Workflow ids of episode sagas that failed: then search keeps its model (their memories lack
    the new model's vectors)."""


REEXTRACTION_EVENTS: tuple[type[EventPayload], ...] = (
    ReextractionRequested,
    EpisodeReextracted,
    ReextractionCompleted,
)


def register_reextraction_events(registry: SchemaRegistry) -> SchemaRegistry:
    """Register the re-extraction events."""
    for model in REEXTRACTION_EVENTS:
        registry.register(model)
    return registry


# --- Workflow inputs and results ---------------------------------------------------------------


class ReextractionRequest(BaseModel):
    """Input of the ``Reextraction`` workflow."""

    request_id: str
    user_id: str | None = None
    """One user's episodes; ``None``: every user's."""
    extractor: str = "rules"
    embedder: str = "wordllama"
    max_concurrency: int = Field(default=4, ge=1)
    """Episode sagas running at once."""
    max_per_second: float | None = Field(default=None, gt=0)
    """Episode sagas started per second at most (set for http adapters); ``None``: no limit."""
    requested_by: str | None = None
    retry: StepRetry = Field(default_factory=StepRetry)


class EpisodeRef(BaseModel):
    """One completed episode to re-extract."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    user_id: str


class EpisodePage(BaseModel):
    """A page of episodes and where the next one starts (``None``: the last page)."""

    episodes: list[EpisodeRef]
    next_position: int | None


class EpisodeJob(BaseModel):
    """Input of the ``EpisodeReextraction`` workflow."""

    request_id: str
    episode: EpisodeRef
    extractor: str
    embedder: str
    causation_id: str
    """The ``ReextractionRequested`` event that caused it."""
    retry: StepRetry = Field(default_factory=StepRetry)


class EpisodeOutcome(BaseModel):
    """What one episode's saga did (counts and ids only: texts stay in the event store)."""

    episode_id: str
    skipped: SkipReason | None = None
    created: list[str] = Field(default_factory=list)
    retired: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    kept_retracted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    held_sensitive: int = 0


class ReextractionProgress(BaseModel):
    """The ``progress`` query, and the workflow's result."""

    request_id: str
    scope: Scope = "all"
    user_id: str | None = None
    extractor: str = "rules"
    embedder: str = "wordllama"
    total: int | None = None
    """Episodes to re-extract (known once the request is recorded)."""
    done: int = 0
    created: int = 0
    retired: int = 0
    unchanged: int = 0
    kept_retracted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    held_sensitive: int = 0
    skipped_forgotten: int = 0
    already: int = 0
    """Episodes whose saga had run under this request before (a resumed request): not run again."""
    failed: list[str] = Field(default_factory=list)
    """Episodes whose saga failed (their workflow ids); re-running the request retries none of them."""
    finished: bool = False

    def add(self, outcome: EpisodeOutcome) -> None:
        """Count one episode's outcome."""
        self.done += 1
        self.created += len(outcome.created)
        self.retired += len(outcome.retired)
        self.unchanged += len(outcome.unchanged)
        self.kept_retracted += outcome.kept_retracted
        self.duplicates += outcome.duplicates
        self.conflicts += outcome.conflicts
        self.held_sensitive += outcome.held_sensitive
        self.skipped_forgotten += outcome.skipped == "forgotten"


# --- The decision ------------------------------------------------------------------------------


class EpisodeMemory(BaseModel):
    """A memory the episode gave (by its first saga or an earlier re-extraction), as it is now."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    created_event_id: str
    content_hash: str
    slot: str | None
    value: str | None
    polarity: str
    status: str
    retracted_by: str | None = None


class Known(BaseModel):
    """What the activity read about the user's other memories, for the candidates' hashes and slots."""

    live_elsewhere: dict[str, str] = Field(default_factory=dict)
    """``{content hash: memory id}`` of current memories of other episodes."""
    retracted_hashes: list[str] = Field(default_factory=list)
    """Content hashes of memories someone retracted (not a re-extraction): never created again."""


def matches(candidate: Candidate, memory: EpisodeMemory) -> bool:
    """Whether a candidate states what a memory of the episode says: the same text, or the same
    slot, polarity and value (a new extractor may word a fact differently)."""
    if candidate.content_hash == memory.content_hash:
        return True
    return (
        candidate.slot is not None
        and candidate.slot == memory.slot
        and candidate.polarity == memory.polarity
        and same_value(candidate.value, memory.value)
    )


def unmatched(candidates: Sequence[Candidate], episode_memories: Sequence[EpisodeMemory]) -> list[Candidate]:
    """The candidates that state no live (not retracted) memory of the episode: reconcile these."""
    live = [m for m in episode_memories if m.status != "retracted"]
    return [c for c in candidates if not any(matches(c, m) for m in live)]


def retired_for_good(memory: EpisodeMemory) -> bool:
    """A memory retracted by someone (a user, a compensation), not by a re-extraction."""
    return memory.status == "retracted" and not (memory.retracted_by or "").startswith(RETRACTED_BY)


def decide(
    *,
    request_id: str,
    episode_id: str,
    extractor: str,
    embedder: str,
    candidates: Sequence[Candidate],
    embeddings: Sequence[EmbeddingRef],
    episode_memories: Sequence[EpisodeMemory],
    known: Known,
    reconciled: CandidatesReconciled,
    planned: dict[str, ReextractedMemory],
) -> EpisodeReextracted:
    """What the new candidates change about the episode's memories.

    ``reconciled`` is :func:`~sagas.memory_extraction.reconcile.reconcile` of the candidates that
    matched no memory of the episode against the user's current memories of their slots;
    ``planned`` maps each candidate id to the memory it would become.
    """
    live = [m for m in episode_memories if m.status != "retracted"]
    found_again: dict[str, str] = {}
    refs = {r.candidate_id: r for r in embeddings}
    ending = {s.candidate_id for s in reconciled.supersessions} | {
        i.candidate_id for i in reconciled.invalidations
    }
    slot_duplicates = {d.candidate_id: d.existing_memory_id for d in reconciled.duplicates}
    blocked = set(known.retracted_hashes) | {m.content_hash for m in episode_memories if retired_for_good(m)}
    sorted_out: dict[str, list[Any]] = {
        "created": [], "kept_retracted": [], "duplicates": [], "conflicts": [], "held_sensitive": []
    }  # fmt: skip
    for candidate in candidates:
        match = next((m for m in live if matches(candidate, m)), None)
        cid = candidate.candidate_id
        if match is not None:
            found_again.setdefault(match.memory_id, cid)
        elif candidate.content_hash in blocked:
            sorted_out["kept_retracted"].append(cid)
        elif candidate.content_hash in known.live_elsewhere or cid in slot_duplicates:
            existing = known.live_elsewhere.get(candidate.content_hash) or slot_duplicates[cid]
            sorted_out["duplicates"].append(DuplicateSkipped(candidate_id=cid, existing_memory_id=existing))
        elif cid in ending or cid not in reconciled.kept:
            sorted_out["conflicts"].append(cid)
        elif sensitivity_of(CandidateSummary.of(candidate)) is not None:
            sorted_out["held_sensitive"].append(cid)
        else:
            sorted_out["created"].append(planned[cid])
    return EpisodeReextracted(
        request_id=request_id,
        episode_id=episode_id,
        extractor=extractor,
        embedder=embedder,
        candidates=list(candidates),
        embeddings=list(embeddings),
        unchanged=[m.memory_id for m in live if m.memory_id in found_again],
        vectors=[
            MemoryVector(memory_id=m, vector_sha256=ref.vector_sha256, dimension=ref.dimension)
            for m, cid in found_again.items()
            if (ref := refs.get(cid)) is not None
        ],
        retired=[
            RetiredMemory(memory_id=m.memory_id, created_event_id=m.created_event_id)
            for m in live
            if m.memory_id not in found_again
        ],
        **sorted_out,
    )


def outcome_of(decision: EpisodeReextracted) -> EpisodeOutcome:
    """The counts of a decision, for the workflow."""
    return EpisodeOutcome(
        episode_id=decision.episode_id,
        created=[m.memory_id for m in decision.created],
        retired=[m.memory_id for m in decision.retired],
        unchanged=decision.unchanged,
        kept_retracted=len(decision.kept_retracted),
        duplicates=len(decision.duplicates),
        conflicts=len(decision.conflicts),
        held_sensitive=len(decision.held_sensitive),
    )


def retire_reason(request_id: str, extractor: str, episode_id: str) -> str:
    """Why a memory is retired: the request, and that its episode no longer gives it."""
    return (
        f"re-extraction {request_id}: extractor {extractor!r} no longer finds this memory"
        f" in episode {episode_id}"
    )
