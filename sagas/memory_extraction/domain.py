"""Pure decisions of the memory-extraction saga: its request and status models, deterministic
ids, which candidates need review, deduplication, the episode's state folded from its events,
and the envelopes of the events the saga writes. No I/O, no clock, no randomness: time and
ids come in as arguments, so a retried activity rebuilds byte-identical events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore import EventPayload, NewEvent, RecordedEvent
from sagas.memory_extraction.events import (
    Candidate,
    CandidatesDeduplicated,
    CandidatesEmbedded,
    CandidatesExtracted,
    CandidatesReconciled,
    DuplicateSkipped,
    EmbeddingRef,
    EpisodeRecorded,
    ExtractionRequested,
    MemoryCreated,
    MemoryInvalidated,
    MemoryKind,
    MemorySuperseded,
    Polarity,
)
from sagas.memory_extraction.text import SENSITIVE_KINDS
from sagas.memory_extraction.world_time import resolve_valid_from

SAGA_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-5b7a-9c41-8e2d7f0b9a13")
"""uuid5 namespace of every id the saga derives (never change it: ids would change)."""

INLINE_TEXT_LIMIT = 16 * 1024
"""Episodes longer than this (UTF-8 bytes) live in the blob store; events and Temporal carry the hash."""

RECORD, EXTRACT, EMBED, DEDUP, RECONCILE, REVIEW, STORE, COMPLETE, COMPENSATE = (
    "record",
    "extract",
    "embed",
    "dedup",
    "reconcile",
    "review",
    "store",
    "complete",
    "compensate",
)
STEPS = (RECORD, EXTRACT, EMBED, DEDUP, RECONCILE, REVIEW, STORE, COMPLETE)
"""The saga's steps in order (``review`` only when needed; ``reconcile`` in sagas started since it exists)."""


class InvalidExtractionRequest(ValueError):
    """The request cannot start a saga; the message says what to change."""


class CandidateNotInEpisode(LookupError):
    """A planned memory names a candidate the episode does not hold (a bug in the plan)."""

    def __init__(self, candidate_id: str, episode_id: str | None) -> None:
        self.candidate_id = candidate_id
        self.episode_id = episode_id
        super().__init__(f"candidate {candidate_id!r} is not in episode {episode_id!r}")


# --- Request, status, result ------------------------------------------------------------------


DEFAULT_STEP_SCHEDULE_TO_CLOSE_SECONDS = 6 * 3600.0
"""How long a step (or compensation) may keep retrying an unreachable service: six hours."""
DEFAULT_ADAPTER_RETRY_SECONDS = 300.0
"""How long an extractor's or embedder's retryable errors (timeouts, 5xx) are retried."""


class StepRetry(BaseModel):
    """How each step's activity retries (docs/sagas.md, "Retries").

    An unreachable PostgreSQL, NATS, blob store or Temporal (any error that is not permanent)
    is retried with backoff from ``initial_interval_seconds``, capped at
    ``maximum_interval_seconds``, for up to ``schedule_to_close_seconds``. An adapter's
    retryable error (timeout, HTTP 5xx, connection refused) fails the step after
    ``maximum_attempts`` attempts or ``adapter_retry_seconds``, whichever comes first.
    Permanent errors fail the step at once.
    """

    maximum_attempts: int = Field(default=10, ge=1)
    """Attempts of an extractor or embedder answering with a retryable error."""
    initial_interval_seconds: float = Field(default=1.0, gt=0)
    maximum_interval_seconds: float = Field(default=30.0, gt=0)
    schedule_to_close_seconds: float = Field(default=DEFAULT_STEP_SCHEDULE_TO_CLOSE_SECONDS, gt=0)
    """The whole time one step (all its attempts) or one compensation may take."""
    adapter_retry_seconds: float = Field(default=DEFAULT_ADAPTER_RETRY_SECONDS, gt=0)
    """The time budget of an adapter's retryable errors, from the step's first attempt."""


class ExtractionOptions(BaseModel):
    """How one saga runs: review, adapters (built by the activities from these specs), retries."""

    review: bool = False
    review_timeout_seconds: float = Field(default=86400.0, gt=0)
    extractor: str = "rules"
    embedder: str = "wordllama"
    extractor_base_url: str | None = None
    embedder_base_url: str | None = None
    heartbeat_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long an extractor or embedder may stay silent before its attempt counts as lost."""
    retry: StepRetry = Field(default_factory=StepRetry)


class ExtractionRequest(BaseModel):
    """Input of the ``MemoryExtraction`` workflow: exactly one of ``text`` / ``text_sha256``."""

    user_id: str
    text: str | None = None
    text_sha256: str | None = None
    source: str = "chat"
    correlation_id: str | None = None
    options: ExtractionOptions = Field(default_factory=ExtractionOptions)


def request_problems(request: ExtractionRequest) -> list[str]:
    """What is wrong with ``request`` (empty when it can start a saga)."""
    problems = []
    if not request.user_id.strip():
        problems.append("user_id must not be empty")
    if (request.text is None) == (request.text_sha256 is None):
        problems.append("give exactly one of text (the episode) or text_sha256 (a blob already stored)")
    if request.text is not None and not request.text.strip():
        problems.append("text must not be empty")
    if request.text is not None and "\x00" in request.text:
        problems.append("text contains a NUL character (\\x00): remove it (it cannot be stored)")
    if "\x00" in request.user_id:
        problems.append("user_id contains a NUL character (\\x00): remove it")
    if request.text_sha256 is not None and not _is_sha256(request.text_sha256):
        problems.append("text_sha256 must be 64 lowercase hex digits")
    return problems


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class ReviewDecision(BaseModel):
    """Sent with the ``approve`` / ``reject`` signals."""

    reviewer: str | None = None
    note: str | None = None
    candidate_ids: list[str] | None = None
    """The candidates decided (``--only``); ``None``: every candidate still undecided."""


class ReviewItem(BaseModel):
    """One candidate under review, as the ``status`` query shows it (its text is in the event store)."""

    candidate_id: str
    kind: MemoryKind
    slot: str | None = None
    polarity: Polarity = "holds"
    reason: str
    decision: Literal["pending", "approved", "rejected"] = "pending"

    @classmethod
    def of(cls, candidate: CandidateSummary, *, requested: bool) -> ReviewItem:
        """The item of a candidate under review, with why it needs one."""
        reason = sensitivity_of(candidate)
        return cls(
            candidate_id=candidate.candidate_id,
            kind=candidate.kind,
            slot=candidate.slot,
            polarity=candidate.polarity,
            reason=f"sensitive ({reason})" if reason else "review requested by the client",
        )


Outcome = Literal["running", "completed", "rejected", "failed", "cancelled", "compensation_failed"]


class ExtractionStatus(BaseModel):
    """What the ``status`` query answers."""

    workflow_id: str
    correlation_id: str
    episode_id: str
    step: str
    outcome: Outcome = "running"
    candidates: int = 0
    duplicates: int = 0
    superseding: int = 0
    """Current memories reconciliation decided to supersede (when the saga stores)."""
    invalidating: int = 0
    """Current memories reconciliation decided to invalidate."""
    memories_created: int = 0
    memory_ids: list[str] = Field(default_factory=list)
    waiting_for_review: bool = False
    review_reasons: list[str] = Field(default_factory=list)
    review: list[ReviewItem] = Field(default_factory=list)
    """The candidates under review and each one's decision so far."""
    failed_step: str | None = None
    reason: str | None = None


class ExtractionResult(BaseModel):
    """What a finished (completed or rejected) saga returns."""

    outcome: Literal["completed", "rejected"]
    episode_id: str
    candidates: int
    duplicates: int
    memory_ids: list[str]
    reason: str | None = None
    last_position: int | None = None
    """Global position of the saga's last event (completed sagas): ``search --after-position``
    waits until the search read model has applied it (read-your-writes)."""


class CandidateSummary(BaseModel):
    """A candidate without its text: what the workflow keeps in its history."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    kind: MemoryKind
    content_hash: str
    sensitive: bool
    sensitivity_reason: str | None = None
    slot: str | None = None
    polarity: Polarity = "holds"

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateSummary:
        """The summary of one extracted candidate."""
        return cls(
            candidate_id=candidate.candidate_id,
            kind=candidate.kind,
            content_hash=candidate.content_hash,
            sensitive=candidate.sensitive,
            sensitivity_reason=candidate.sensitivity_reason,
            slot=candidate.slot,
            polarity=candidate.polarity,
        )


class PlannedMemory(BaseModel):
    """A memory the store step will create: its id and the id of its ``MemoryCreated``."""

    model_config = ConfigDict(frozen=True)

    candidate_id: str
    memory_id: str
    created_event_id: str


# --- Deterministic ids ------------------------------------------------------------------------


def event_key(step: str, index: int | str = 0) -> str:
    """The name of one event a step writes, e.g. ``record:1`` or ``store:<candidate id>``."""
    return f"{step}:{index}"


def derived_id(workflow_id: str, key: str) -> uuid.UUID:
    """``uuid5(SAGA_NAMESPACE, "<workflow id>:<key>")``: the same on every retry and replay."""
    return uuid.uuid5(SAGA_NAMESPACE, f"{workflow_id}:{key}")


def episode_id_for(workflow_id: str) -> str:
    """The episode id of a saga (its stream is ``episode-<id>``)."""
    return str(derived_id(workflow_id, "episode"))


def plan_memories(workflow_id: str, candidate_ids: Sequence[str]) -> list[PlannedMemory]:
    """The memories the store step creates for the kept candidates, with their ids."""
    return [
        PlannedMemory(
            candidate_id=cid,
            memory_id=str(derived_id(workflow_id, f"memory:{cid}")),
            created_event_id=str(derived_id(workflow_id, event_key(STORE, cid))),
        )
        for cid in candidate_ids
    ]


# --- Decisions --------------------------------------------------------------------------------


def sensitivity_of(candidate: CandidateSummary) -> str | None:
    """Why a candidate is sensitive (health, finances, identifiers...), or None."""
    if candidate.kind in SENSITIVE_KINDS:
        return candidate.sensitivity_reason or SENSITIVE_KINDS[candidate.kind]
    if candidate.sensitive:
        return candidate.sensitivity_reason or "sensitive"
    return None


def review_needed(candidates: Sequence[CandidateSummary], *, requested: bool) -> tuple[list[str], list[str]]:
    """``(candidate ids under review, reasons)``; both empty when no review is needed.

    Only the candidates about to become memories count: nothing to store, nothing to review.
    """
    if not candidates:
        return [], []
    sensitive = [(c.candidate_id, reason) for c in candidates if (reason := sensitivity_of(c)) is not None]
    reasons = [f"candidate {cid} is sensitive ({reason})" for cid, reason in sensitive]
    if requested:
        return [c.candidate_id for c in candidates], ["review requested by the client", *reasons]
    return [cid for cid, _ in sensitive], reasons


def deduplicate(
    candidates: Sequence[CandidateSummary],
    existing: Mapping[str, str],
    planned: Mapping[str, str],
) -> CandidatesDeduplicated:
    """Keep candidates whose content hash the user has no live memory for.

    ``existing`` maps content hash to an existing memory id; ``planned`` maps candidate id
    to the memory id it would get, so a repeat within one episode points at the first one.
    """
    seen = dict(existing)
    kept: list[str] = []
    skipped: list[DuplicateSkipped] = []
    for candidate in candidates:
        memory_id = seen.get(candidate.content_hash)
        if memory_id is not None:
            skipped.append(
                DuplicateSkipped(candidate_id=candidate.candidate_id, existing_memory_id=memory_id)
            )
            continue
        kept.append(candidate.candidate_id)
        seen[candidate.content_hash] = planned[candidate.candidate_id]
    return CandidatesDeduplicated(kept=kept, skipped=skipped)


# --- The episode, folded from its stream --------------------------------------------------------


class EpisodeState(BaseModel):
    """What the saga has recorded in its episode stream so far."""

    episode_id: str | None = None
    requested_event_id: str | None = None
    source: str = "chat"
    text: str | None = None
    text_sha256: str | None = None
    occurred_at: datetime | None = None
    """When the episode was recorded (its ``EpisodeRecorded``): world time when a text states none."""
    candidates: list[Candidate] = Field(default_factory=list)
    embeddings: dict[str, EmbeddingRef] = Field(default_factory=dict)
    embedder: str | None = None
    kept: list[str] = Field(default_factory=list)
    reconciled: CandidatesReconciled | None = None
    event_types: list[str] = Field(default_factory=list)
    version: int = 0
    position: int = 0


def evolve(state: EpisodeState, event: RecordedEvent) -> EpisodeState:
    """The state after one more event of the episode stream."""
    update: dict[str, Any] = {
        "version": event.version,
        "position": event.position,
        "event_types": [*state.event_types, event.event_type],
    }
    match event.event_type:
        case ExtractionRequested.event_type:
            update["requested_event_id"] = str(event.event_id)
            update["episode_id"] = event.payload["episode_id"]
        case EpisodeRecorded.event_type:
            recorded = EpisodeRecorded.model_validate(event.payload)
            update |= {
                "text": recorded.text,
                "text_sha256": recorded.text_sha256,
                "source": recorded.source,
                "occurred_at": event.occurred_at,
            }
        case CandidatesExtracted.event_type:
            update["candidates"] = CandidatesExtracted.model_validate(event.payload).candidates
        case CandidatesEmbedded.event_type:
            embedded = CandidatesEmbedded.model_validate(event.payload)
            update["embeddings"] = {ref.candidate_id: ref for ref in embedded.embeddings}
            update["embedder"] = embedded.embedder
        case CandidatesDeduplicated.event_type:
            update["kept"] = CandidatesDeduplicated.model_validate(event.payload).kept
        case CandidatesReconciled.event_type:
            update["reconciled"] = CandidatesReconciled.model_validate(event.payload)
    return state.model_copy(update=update)


def episode_state(events: Sequence[RecordedEvent]) -> EpisodeState:
    """Fold an episode stream into its state."""
    state = EpisodeState()
    for event in events:
        state = evolve(state, event)
    return state


def memory_created(state: EpisodeState, planned: PlannedMemory, user_id: str) -> MemoryCreated:
    """The ``MemoryCreated`` of one kept candidate, with its vector's hash when it has one.

    :raises CandidateNotInEpisode: the plan names a candidate the episode does not hold.
    """
    candidate = next((c for c in state.candidates if c.candidate_id == planned.candidate_id), None)
    if candidate is None:
        raise CandidateNotInEpisode(planned.candidate_id, state.episode_id)
    embedding = state.embeddings.get(candidate.candidate_id)
    summary = CandidateSummary.of(candidate)
    return MemoryCreated(
        memory_id=planned.memory_id,
        user_id=user_id,
        episode_id=state.episode_id or "",
        text=candidate.text,
        kind=candidate.kind,
        content_hash=candidate.content_hash,
        vector_sha256=embedding.vector_sha256 if embedding else None,
        dimension=embedding.dimension if embedding else None,
        embedder=state.embedder if embedding else None,
        source=state.source,
        sensitive=sensitivity_of(summary) is not None,
        slot=candidate.slot,
        value=candidate.value,
        polarity=candidate.polarity,
        valid_from=valid_from_of(candidate, state),
    )


def ending_key(memory_id: str) -> str:
    """The saga event key of the ``MemorySuperseded`` / ``MemoryInvalidated`` that ends ``memory_id``."""
    return event_key(STORE, f"end:{memory_id}")


def endings(
    state: EpisodeState, planned: Sequence[PlannedMemory], approved: Sequence[str] | None, user_id: str
) -> list[MemorySuperseded | MemoryInvalidated]:
    """The events that end memories, as reconciliation decided, for what the store step creates.

    A supersession applies when its successor is among ``planned``; an invalidation when its
    candidate is approved (``approved`` is None when no review was needed). ``valid_to`` is
    the world time of the candidate that ends the memory.
    """
    decided = state.reconciled
    if decided is None:
        return []
    created = {p.memory_id for p in planned}
    allowed = None if approved is None else set(approved)
    by_id = {c.candidate_id: c for c in state.candidates}
    episode_id = state.episode_id or ""
    result: list[MemorySuperseded | MemoryInvalidated] = []
    for supersession in decided.supersessions:
        if supersession.successor_id in created:
            result.append(
                MemorySuperseded(
                    memory_id=supersession.memory_id,
                    user_id=user_id,
                    successor_id=supersession.successor_id,
                    valid_to=_world_time(by_id[supersession.candidate_id], state),
                    episode_id=episode_id,
                )
            )
    for invalidation in decided.invalidations:
        if allowed is None or invalidation.candidate_id in allowed:
            candidate = by_id[invalidation.candidate_id]
            result.append(
                MemoryInvalidated(
                    memory_id=invalidation.memory_id,
                    user_id=user_id,
                    valid_to=_world_time(candidate, state),
                    episode_id=episode_id,
                    statement=candidate.text,
                )
            )
    return result


def _world_time(candidate: Candidate, state: EpisodeState) -> datetime:
    resolved = valid_from_of(candidate, state)
    if resolved is None:
        raise ValueError(f"episode {state.episode_id} has no recorded time")
    return resolved


def valid_from_of(candidate: Candidate, state: EpisodeState) -> datetime | None:
    """When the candidate's fact started (or ended) in the world: its stated date, else the episode's time."""
    if state.occurred_at is None:
        return None
    return resolve_valid_from(candidate.valid_from, state.occurred_at)


# --- Event envelopes --------------------------------------------------------------------------


class Envelope(BaseModel):
    """What every event of one saga shares; ``occurred_at`` comes from ``workflow.now()``."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    correlation_id: str
    user_id: str
    occurred_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict)
    """Passed through to every event (e.g. a ``traceparent``, later)."""


def saga_event(envelope: Envelope, key: str, payload: EventPayload, *, causation_id: str) -> NewEvent:
    """The event ``key`` of a saga: id derived from workflow id + key, so retries rebuild it."""
    return NewEvent.of(
        payload,
        event_id=derived_id(envelope.workflow_id, key),
        correlation_id=envelope.correlation_id,
        causation_id=causation_id,
        user_id=envelope.user_id,
        occurred_at=envelope.occurred_at,
        metadata={**envelope.metadata, "workflow_id": envelope.workflow_id, "saga_event": key},
    )
