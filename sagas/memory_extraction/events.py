"""Events of memory extraction: the contract between the saga (writer) and the projections.

Streams: ``episode-<episode_id>`` holds one saga's facts; ``memory-<memory_id>`` holds one
memory's life. Every payload is versioned from day one (``event_version``); a change that
is not purely additive-with-default gets a new version and an upcaster in
:func:`register_events`. Compensating events name the event they undo.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore import EventPayload, SchemaRegistry
from eventstore.personal import IndexedPersonalStr, PersonalStr

MemoryKind = Literal[
    "preference", "identity", "relation", "plan", "date", "fact", "health", "finance", "identifier"
]

Polarity = Literal["holds", "ended"]
"""Whether a statement says its fact holds ("I live in Berlin") or no longer holds ("I don't live
in Lisbon anymore")."""


def episode_stream(episode_id: str) -> str:
    """Stream id of one extraction saga's episode."""
    return f"episode-{episode_id}"


def memory_stream(memory_id: str) -> str:
    """Stream id of one memory."""
    return f"memory-{memory_id}"


class Candidate(BaseModel):
    """A memory the extractor proposes; ``content_hash`` is SHA-256 of the normalised text."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    text: PersonalStr
    kind: MemoryKind
    content_hash: PersonalStr
    sensitive: bool = False
    sensitivity_reason: PersonalStr | None = None
    attributes: dict[str, PersonalStr] = Field(default_factory=dict)
    slot: PersonalStr | None = None
    """What the fact is about, so that two memories can conflict: ``residence``, ``employer``,
    ``job_title``, ``name``, ``diet``, ``preference:coffee``, ``relation:sister:Ana``,
    ``relation:brother:Tom:residence``... ``None``: it conflicts with nothing (exact repeats
    are still duplicates)."""
    value: PersonalStr | None = None
    """What the fact says the slot holds (``Berlin``, ``Siemens``, ``positive``); two memories of
    one slot with equal values (casefolded) state the same fact. ``None`` with ``ended``: every
    value of the slot ends."""
    polarity: Polarity = "holds"
    valid_from: str | None = None
    """When the fact became true (or, when ``ended``, stopped being true) in the world, as the
    text states it, in ISO 8601: ``2024``, ``2024-05``, ``2024-05-03``, or without a year
    ``--05`` / ``--05-03`` (the latest such date not after the episode). ``None``: the text
    does not say; the episode's time is used."""


class EmbeddingRef(BaseModel):
    """A candidate's vector, stored in the blob store (little-endian float32) under its hash."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    vector_sha256: str
    dimension: int


class ExtractionRequested(EventPayload):
    """A client asked for memories to be extracted from an episode."""

    event_type = "ExtractionRequested"
    workflow_id: str
    episode_id: str
    source: str
    review_requested: bool = False
    extractor: str
    embedder: str


class EpisodeRecorded(EventPayload):
    """The episode's text: inline when short, otherwise only by hash (blob store)."""

    event_type = "EpisodeRecorded"
    episode_id: str
    source: str
    text: PersonalStr | None
    text_sha256: PersonalStr
    text_bytes: int


class CandidatesExtracted(EventPayload):
    """What the extractor found."""

    event_type = "CandidatesExtracted"
    extractor: str
    candidates: list[Candidate]


class CandidatesEmbedded(EventPayload):
    """Vectors of the candidates, by blob hash."""

    event_type = "CandidatesEmbedded"
    embedder: str
    embeddings: list[EmbeddingRef]


class DuplicateSkipped(BaseModel):
    """A candidate the user already has a memory for."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    existing_memory_id: str


class CandidatesDeduplicated(EventPayload):
    """Which candidates are new, and which repeat an existing memory of the user."""

    event_type = "CandidatesDeduplicated"
    kept: list[str]
    skipped: list[DuplicateSkipped]


class SlotMemory(BaseModel):
    """A current memory of the user that reconciliation compared candidates with."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    slot: PersonalStr
    value: PersonalStr | None
    polarity: Polarity
    text: PersonalStr


class Supersession(BaseModel):
    """A candidate replaces a current memory of the same slot with another value."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    """The memory that stops being current."""
    candidate_id: str
    successor_id: str
    """The memory the candidate becomes."""


class Invalidation(BaseModel):
    """A candidate says a current memory no longer holds ("I don't live in Lisbon anymore")."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    candidate_id: str


class CandidatesReconciled(EventPayload):
    """How the new candidates meet the user's current memories of the same slots.

    ``considered`` are the memories the decision read (so a replay can check it decides the
    same); ``kept`` the candidates that become memories; ``duplicates`` those that restate a
    current memory; ``supersessions`` and ``invalidations`` what the store step will end.
    """

    event_type = "CandidatesReconciled"
    considered: list[SlotMemory]
    kept: list[str]
    duplicates: list[DuplicateSkipped]
    supersessions: list[Supersession]
    invalidations: list[Invalidation]


class ReviewRequested(EventPayload):
    """The saga waits for a human: sensitive candidates, or the request asked for it."""

    event_type = "ReviewRequested"
    candidate_ids: list[str]
    reasons: list[str]
    timeout_seconds: float


class ReviewApproved(EventPayload):
    """A reviewer approved candidates: those named, or (``None``) every one under review."""

    event_type = "ReviewApproved"
    reviewer: str | None = None
    note: PersonalStr | None = None
    candidate_ids: list[str] | None = None


class ReviewRejected(EventPayload):
    """A reviewer rejected the candidates, or the review timed out (``timed_out``)."""

    event_type = "ReviewRejected"
    reviewer: str | None = None
    reason: PersonalStr
    timed_out: bool = False
    candidate_ids: list[str] | None = None
    """The candidates rejected (``None``: every one under review; the saga compensates)."""


class MemoryCreatedV1(EventPayload):
    """Version 1 of :class:`MemoryCreated`: without the embedder of its vector."""

    event_type = "MemoryCreated"
    event_version = 1
    memory_id: str
    user_id: str
    episode_id: str
    text: PersonalStr
    kind: MemoryKind
    content_hash: IndexedPersonalStr
    vector_sha256: str | None
    dimension: int | None
    source: str
    sensitive: bool = False


class MemoryCreatedV2(EventPayload):
    """Version 2 of :class:`MemoryCreated`: without slot, value, polarity and world time."""

    event_type = "MemoryCreated"
    event_version = 2
    memory_id: str
    user_id: str
    episode_id: str
    text: PersonalStr
    kind: MemoryKind
    content_hash: IndexedPersonalStr
    vector_sha256: str | None
    dimension: int | None
    embedder: str | None
    source: str
    sensitive: bool = False


class MemoryCreated(EventPayload):
    """A long-term memory (in its own stream).

    ``embedder`` names the model that made the vector (``wordllama:l2_supercat_256``,
    ``hashing-v1``, ``http:<model>``); with ``dimension`` it says which vectors can be
    compared with it. ``None`` when the memory has no vector, or was written as version 1.
    ``slot``, ``value`` and ``polarity`` are the candidate's (see :class:`Candidate`);
    ``valid_from`` is when the fact became true in the world (the stated date, else the
    episode's time; ``None`` only for memories written before version 3: read it as the
    event's ``occurred_at``).
    """

    event_type = "MemoryCreated"
    event_version = 3
    memory_id: str
    user_id: str
    episode_id: str
    text: PersonalStr
    kind: MemoryKind
    content_hash: IndexedPersonalStr
    vector_sha256: str | None
    dimension: int | None
    embedder: str | None
    source: str
    sensitive: bool = False
    slot: IndexedPersonalStr | None = None
    value: PersonalStr | None = None
    polarity: Polarity = "holds"
    valid_from: datetime | None = None


def memory_created_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 did not record the embedder: it is unknown (``None``)."""
    return {**payload, "embedder": None}


def memory_created_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 2 had no slot and no world time: it conflicts with nothing, valid from its event."""
    return {**payload, "slot": None, "value": None, "polarity": "holds", "valid_from": None}


class MemorySuperseded(EventPayload):
    """A newer memory of the same slot replaced this one (in the old memory's stream).

    ``valid_to`` is when it stopped being true in the world: the successor's ``valid_from``.
    """

    event_type = "MemorySuperseded"
    memory_id: str
    user_id: str
    successor_id: str
    valid_to: datetime
    episode_id: str
    """The episode whose statement superseded it."""


class MemoryInvalidated(EventPayload):
    """A statement said this memory no longer holds ("I don't live in Lisbon anymore")."""

    event_type = "MemoryInvalidated"
    memory_id: str
    user_id: str
    valid_to: datetime
    episode_id: str
    statement: PersonalStr
    """The statement that ended it, as the extractor wrote it."""


class MemoryReinstated(EventPayload):
    """Compensation: a supersession or invalidation is undone; the memory is current again."""

    event_type = "MemoryReinstated"
    memory_id: str
    user_id: str
    compensates_event_id: str
    """The ``MemorySuperseded`` or ``MemoryInvalidated`` this undoes."""
    reason: PersonalStr


class MemoryRetractedV1(EventPayload):
    """Version 1 of :class:`MemoryRetracted`: the undone event was ``retracts_event_id``."""

    event_type = "MemoryRetracted"
    event_version = 1
    memory_id: str
    user_id: str
    retracts_event_id: str
    reason: PersonalStr


class MemoryRetracted(EventPayload):
    """A memory is withdrawn: a saga's compensation, or a user's request (``memsaga retract``).

    Names the ``MemoryCreated`` it undoes; ``retracted_by`` is who asked (``None``: a saga).
    A retracted memory leaves every read model; its events stay.
    """

    event_type = "MemoryRetracted"
    event_version = 2
    memory_id: str
    user_id: str
    compensates_event_id: str
    reason: PersonalStr
    retracted_by: str | None = None


def memory_retracted_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named the undone event ``retracts_event_id``, and only sagas retracted."""
    rest = {k: v for k, v in payload.items() if k != "retracts_event_id"}
    return {**rest, "compensates_event_id": payload["retracts_event_id"], "retracted_by": None}


class ExtractionCompleted(EventPayload):
    """The saga finished: counts and the memories it created."""

    event_type = "ExtractionCompleted"
    candidates: int
    duplicates: int
    memories_created: int
    memory_ids: list[str]


class ExtractionCompensated(EventPayload):
    """The saga was undone: why, at which step, and what its compensations undid."""

    event_type = "ExtractionCompensated"
    reason: PersonalStr
    failed_step: str | None
    retracted_memory_ids: list[str]
    compensates_event_ids: list[str]
    reinstated_memory_ids: list[str] = Field(default_factory=list)
    """Memories the saga had superseded or invalidated, current again."""


class CompensationFailed(EventPayload):
    """A compensation could not be applied even after its retries: a human must look."""

    event_type = "CompensationFailed"
    step: str
    error: str


ALL_EVENTS: tuple[type[EventPayload], ...] = (
    ExtractionRequested,
    EpisodeRecorded,
    CandidatesExtracted,
    CandidatesEmbedded,
    CandidatesDeduplicated,
    CandidatesReconciled,
    ReviewRequested,
    ReviewApproved,
    ReviewRejected,
    MemoryCreated,
    MemorySuperseded,
    MemoryInvalidated,
    MemoryReinstated,
    MemoryRetracted,
    ExtractionCompleted,
    ExtractionCompensated,
    CompensationFailed,
)

OLDER_VERSIONS: tuple[type[EventPayload], ...] = (MemoryCreatedV1, MemoryCreatedV2, MemoryRetractedV1)
"""Superseded payload versions: still decoded (stored events are never rewritten), upcast on read."""

COMPENSATING_EVENTS = frozenset(
    {"MemoryRetracted", "MemoryReinstated", "ExtractionCompensated", "CompensationFailed"}
)


def register_events(registry: SchemaRegistry) -> SchemaRegistry:
    """Register every memory-extraction event, its older versions and their upcasters."""
    for model in (*ALL_EVENTS, *OLDER_VERSIONS):
        registry.register(model)
    registry.register_upcaster(MemoryCreated.event_type, 1, memory_created_v1_to_v2)
    registry.register_upcaster(MemoryCreated.event_type, 2, memory_created_v2_to_v3)
    registry.register_upcaster(MemoryRetracted.event_type, 1, memory_retracted_v1_to_v2)
    return registry
