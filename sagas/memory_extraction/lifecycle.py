"""One memory's life, folded from its stream: current, superseded, invalidated or retracted.

Pure: the state is a function of the memory's events alone, so the saga (reconciling a new
episode), ``memsaga history``, the read models' tests and the point-in-time baseline all agree.

- ``MemoryCreated``: current, valid from its ``valid_from`` (else the event's ``occurred_at``).
- ``MemorySuperseded`` / ``MemoryInvalidated``: no longer current; ``valid_to`` is set.
- ``MemoryReinstated``: undoes the supersession or invalidation it names; current again.
- ``MemoryRetracted``: withdrawn for good (a compensation or a user's request); it was never
  true, so it is valid at no time and nothing reinstates it.

System time is the events' ``recorded_at``: :func:`memory_as_of` folds only the events recorded
up to a moment, which is what memsaga believed then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from eventstore import RecordedEvent
from sagas.memory_extraction.events import (
    MemoryCreated,
    MemoryInvalidated,
    MemoryReinstated,
    MemoryRetracted,
    MemorySuperseded,
    Polarity,
)

MemoryStatus = Literal["current", "superseded", "invalidated", "retracted"]
STATUSES: tuple[MemoryStatus, ...] = ("current", "superseded", "invalidated", "retracted")

LIFECYCLE_EVENTS = frozenset(
    {
        MemoryCreated.event_type,
        MemorySuperseded.event_type,
        MemoryInvalidated.event_type,
        MemoryReinstated.event_type,
        MemoryRetracted.event_type,
    }
)
"""The event types of a memory's stream."""


class MemoryState(BaseModel):
    """A memory as its events say it is (``None`` fields: not known yet)."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    user_id: str
    text: str | None = None
    kind: str | None = None
    slot: str | None = None
    value: str | None = None
    polarity: Polarity = "holds"
    episode_id: str | None = None
    created_event_id: str | None = None
    recorded_at: datetime | None = None
    """When memsaga recorded the memory (its ``MemoryCreated``)."""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    status: MemoryStatus = "current"
    superseded_by: str | None = None
    ended_by_event_id: str | None = None
    """The ``MemorySuperseded`` / ``MemoryInvalidated`` that ended it (what a reinstatement undoes)."""
    version: int = 0

    @property
    def is_current(self) -> bool:
        """Created, and neither ended nor retracted."""
        return self.status == "current" and self.created_event_id is not None

    def valid_at(self, moment: datetime) -> bool:
        """Whether the memory was true in the world at ``moment`` (as far as these events know)."""
        if self.status == "retracted" or self.created_event_id is None:
            return False
        starts = self.valid_from is None or self.valid_from <= moment
        return starts and (self.valid_to is None or moment < self.valid_to)


def evolve_memory(state: MemoryState | None, event: RecordedEvent) -> MemoryState | None:
    """The state after one more event of a memory's stream (other events leave it unchanged)."""
    payload = event.payload
    if event.event_type == MemoryCreated.event_type:
        created = MemoryCreated.model_validate(payload)
        base = state or MemoryState(memory_id=created.memory_id, user_id=created.user_id)
        return base.model_copy(
            update={
                "text": created.text,
                "kind": created.kind,
                "slot": created.slot,
                "value": created.value,
                "polarity": created.polarity,
                "episode_id": created.episode_id,
                "created_event_id": str(event.event_id),
                "recorded_at": event.recorded_at,
                "valid_from": created.valid_from or event.occurred_at,
                "version": event.version,
            }
        )
    if event.event_type not in LIFECYCLE_EVENTS:
        return state
    if state is None:
        state = MemoryState(memory_id=payload["memory_id"], user_id=payload["user_id"])
    update: dict[str, object] = {"version": event.version}
    if state.status != "retracted":
        match event.event_type:
            case MemorySuperseded.event_type:
                superseded = MemorySuperseded.model_validate(payload)
                update |= {
                    "status": "superseded",
                    "valid_to": superseded.valid_to,
                    "superseded_by": superseded.successor_id,
                    "ended_by_event_id": str(event.event_id),
                }
            case MemoryInvalidated.event_type:
                invalidated = MemoryInvalidated.model_validate(payload)
                update |= {
                    "status": "invalidated",
                    "valid_to": invalidated.valid_to,
                    "ended_by_event_id": str(event.event_id),
                }
            case MemoryReinstated.event_type:
                if payload["compensates_event_id"] == state.ended_by_event_id:
                    update |= {
                        "status": "current",
                        "valid_to": None,
                        "superseded_by": None,
                        "ended_by_event_id": None,
                    }
            case MemoryRetracted.event_type:
                update["status"] = "retracted"
    return state.model_copy(update=update)


def memory_state(events: Iterable[RecordedEvent]) -> MemoryState | None:
    """Fold a memory's stream (in stream order); ``None`` when it holds no memory event."""
    state: MemoryState | None = None
    for event in events:
        state = evolve_memory(state, event)
    return state


def memory_as_of(events: Sequence[RecordedEvent], as_of: datetime) -> MemoryState | None:
    """What memsaga believed about the memory at ``as_of``: its events recorded up to then."""
    return memory_state(e for e in events if e.recorded_at <= as_of)
