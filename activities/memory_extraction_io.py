"""Inputs and results of the memory-extraction activities: one pydantic input per activity.

Results carry only small data (ids, hashes, counts): texts and vectors stay in the event
store and the blob store, so the workflow's history stays small.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sagas.memory_extraction.domain import CandidateSummary, Envelope, ExtractionOptions, PlannedMemory


class StepInput(BaseModel):
    """What every step appending to the episode stream needs."""

    envelope: Envelope
    episode_id: str
    causation_id: str
    """Id of the event (or request) that caused this step's first event."""
    expected_version: int
    """Version of the episode stream before this step (its events go right after)."""


class RecordEpisodeInput(BaseModel):
    """Step 1: the request and the episode's text (inline, or by blob hash)."""

    envelope: Envelope
    episode_id: str
    text: str | None
    text_sha256: str | None
    source: str
    options: ExtractionOptions


class ExtractInput(StepInput):
    """Step 2: extract candidates with the extractor the options name."""

    options: ExtractionOptions


class EmbedInput(StepInput):
    """Step 3: embed the candidates with the embedder the options name."""

    options: ExtractionOptions


class DeduplicateInput(StepInput):
    """Step 4: drop candidates the user already has a live memory for."""


class ReconcileInput(StepInput):
    """Step 5: compare the kept candidates with the user's current memories of the same slots."""


class RequestReviewInput(StepInput):
    """Step 5a: a human must approve these candidates."""

    candidate_ids: list[str]
    reasons: list[str]
    timeout_seconds: float


class DecideReviewInput(StepInput):
    """Step 5b: the reviewer's decision (or the timeout's)."""

    approved: bool
    reviewer: str | None = None
    note: str | None = None
    timed_out: bool = False
    index: int = 1
    """Which decision of the review this is (1 for the first): its event is ``review:<index>``."""
    candidate_ids: list[str] | None = None
    """The candidates it decides (``None``: every candidate under review)."""


class StoreMemoriesInput(StepInput):
    """Step 7: one ``MemoryCreated`` per planned memory, each in its own stream; then the
    supersessions and invalidations reconciliation decided, for the approved candidates."""

    memories: list[PlannedMemory]
    approved: list[str] | None = None
    """Candidate ids a reviewer let through (``None``: every candidate, no review was needed)."""


class CompleteInput(StepInput):
    """Step 7: the counts of the finished saga."""

    candidates: int
    duplicates: int
    memory_ids: list[str]


class RetractMemoriesInput(BaseModel):
    """Compensation of the store step: reinstate every memory it ended, retract every memory it created."""

    envelope: Envelope
    episode_id: str | None = None
    """Where the reconcile decision is (``None`` in histories recorded before reconciliation)."""
    memories: list[PlannedMemory]
    reason: str
    causation_id: str


class CompensateExtractionInput(BaseModel):
    """Compensation of step 1: mark the saga undone in the episode stream."""

    envelope: Envelope
    episode_id: str
    reason: str
    failed_step: str | None
    retracted_memory_ids: list[str]
    retracted_event_ids: list[str]
    causation_id: str
    reinstated_memory_ids: list[str] = Field(default_factory=list)
    source: str | None = None
    """With ``options``: the request, recorded first when the saga recorded nothing (it failed at
    ``record``), so that every request leaves events; ``None`` (older runs): nothing is recorded."""
    options: ExtractionOptions | None = None


class RecordCompensationFailedInput(BaseModel):
    """A compensation failed after its retries: record it for a human."""

    envelope: Envelope
    episode_id: str
    step: str
    error: str
    causation_id: str


class Appended(BaseModel):
    """Where a step left the episode stream: its last event, the stream's version and the global
    position of that event (``None`` in histories recorded before positions were returned)."""

    event_id: str
    version: int
    position: int | None = None


class ExtractResult(Appended):
    """The candidates found, without their texts."""

    candidates: list[CandidateSummary]


class EmbedResult(Appended):
    """How many vectors were stored, and their dimension."""

    count: int
    dimension: int


class DeduplicateResult(Appended):
    """Candidates kept, and how many repeated an existing memory."""

    kept: list[str]
    duplicates: int


class ReconcileResult(Appended):
    """What reconciliation decided: candidates kept, duplicates, and the memories to end."""

    kept: list[str]
    """Candidates that become memories."""
    duplicates: int
    ending: list[str]
    """Candidates that end a memory without becoming one (they are reviewed like the kept ones)."""
    superseded: int
    invalidated: int


class StoreResult(BaseModel):
    """The memories created (ids in plan order) and those ended."""

    memory_ids: list[str]
    superseded: list[str] = Field(default_factory=list)
    invalidated: list[str] = Field(default_factory=list)


class RetractResult(BaseModel):
    """What this compensation undid: memories retracted (and their ``MemoryCreated``), memories
    reinstated (and the ``MemorySuperseded`` / ``MemoryInvalidated`` it undid)."""

    retracted_memory_ids: list[str] = Field(default_factory=list)
    retracted_event_ids: list[str] = Field(default_factory=list)
    reinstated_memory_ids: list[str] = Field(default_factory=list)
    reinstated_event_ids: list[str] = Field(default_factory=list)


class CompensateResult(BaseModel):
    """The ``ExtractionCompensated`` event's id, or None when the saga had recorded nothing."""

    event_id: str | None
