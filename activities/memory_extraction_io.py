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


class StoreMemoriesInput(StepInput):
    """Step 6: one ``MemoryCreated`` per planned memory, each in its own stream."""

    memories: list[PlannedMemory]


class CompleteInput(StepInput):
    """Step 7: the counts of the finished saga."""

    candidates: int
    duplicates: int
    memory_ids: list[str]


class RetractMemoriesInput(BaseModel):
    """Compensation of step 6: retract every planned memory that was created."""

    envelope: Envelope
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


class StoreResult(BaseModel):
    """The memories created (ids in plan order)."""

    memory_ids: list[str]


class RetractResult(BaseModel):
    """The memories this compensation retracted, and the ``MemoryCreated`` events it undid."""

    retracted_memory_ids: list[str] = Field(default_factory=list)
    retracted_event_ids: list[str] = Field(default_factory=list)


class CompensateResult(BaseModel):
    """The ``ExtractionCompensated`` event's id, or None when the saga had recorded nothing."""

    event_id: str | None
