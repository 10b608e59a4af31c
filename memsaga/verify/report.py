"""What ``memsaga verify`` found: one section per invariant, and the violations (the JSON shape).

The shape is documented in docs/reliability.md (*Verify*); fields are only ever added.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class Violation(BaseModel):
    """One broken invariant: which check, what kind, about what, and what to do."""

    model_config = ConfigDict(frozen=True)

    check: str
    """``stream``, ``read_models``, ``positions`` or ``sagas``."""
    kind: str
    """e.g. ``missing_in_stream``, ``read_model_differs``, ``relay_lag``, ``parked``, ``stuck_saga``."""
    subject: str
    """What it is about: a projection, a saga's correlation id, a range of positions, a service."""
    message: str
    fix: str | None = None


class StreamCheck(BaseModel):
    """Every event up to the relay's checkpoint is in JetStream (compared by event id)."""

    stream: str
    messages: int
    store_events: int
    relayed_up_to: int
    checked: int
    missing: int
    missing_ranges: list[tuple[int, int]]
    unknown: int
    """Messages whose event id the event store does not hold."""
    republished: int
    """Messages that repeat an event already in the stream (a deliberate republish stores them again)."""
    republish: list[str]
    """The commands that publish the missing events again."""


class TableDigest(BaseModel):
    """Row count and content hash of one read-model table, live and rebuilt."""

    table: str
    live_rows: int
    rebuilt_rows: int
    live_hash: str
    rebuilt_hash: str

    @property
    def equal(self) -> bool:
        """Whether the live table holds exactly the rebuilt rows."""
        return self.live_rows == self.rebuilt_rows and self.live_hash == self.rebuilt_hash


class ReadModelCheck(BaseModel):
    """One projection's live read model against a rebuild, from the store, of the events it applied."""

    projection: str
    version: int | None
    position: int
    applied: int
    equal: bool
    tables: list[TableDigest]
    unapplied: int
    """Events it handles, at or below its checkpoint, older than the lag limit, neither applied nor parked."""
    seconds: float


class LagReport(BaseModel):
    """A reader's position against the store's head."""

    name: str
    position: int
    lag_events: int
    lag_seconds: float
    parked: int = 0


class PositionsCheck(BaseModel):
    """The relay's and each projection's position, lag and parked events."""

    head: int
    relay: LagReport
    projections: list[LagReport]


class SagaEntry(BaseModel):
    """A saga that is not terminal."""

    correlation_id: str
    status: str
    since: datetime | None
    age_seconds: float | None
    source: str
    """``read_model`` (the extractions read model) or ``temporal`` (a running workflow)."""


class SagasCheck(BaseModel):
    """Sagas not terminal for longer than ``stuck_after_seconds`` (waiting for a review is not stuck)."""

    stuck_after_seconds: float
    running: int
    waiting_for_review: int
    stuck: list[SagaEntry]
    temporal: str | None
    """Why Temporal's view is missing (unreachable), or None when it was read."""


class VerifyReport(BaseModel):
    """Everything ``memsaga verify`` checked; ``ok`` when there is no violation."""

    ok: bool
    checked_at: datetime
    stream: StreamCheck | None
    read_models: list[ReadModelCheck]
    positions: PositionsCheck | None
    sagas: SagasCheck | None
    violations: list[Violation]
