"""Memory streams with a life (superseded, invalidated, reinstated, retracted) for read-model tests.

``plan_stream`` turns a list of operations into one memory's events; hypothesis strategies
draw the operations. Everything is written straight into an event store, as the saga would.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import strategies as st

from eventstore import EventPayload, NewEvent, RecordedEvent
from sagas.memory_extraction import events as ev
from sagas.memory_extraction.lifecycle import MemoryState, memory_as_of, memory_state

WORLD = datetime(2024, 1, 1, tzinfo=UTC)
"""World time of the generated memories: valid_from and valid_to are days after it."""

Op = Literal["supersede", "invalidate", "reinstate", "retract"]
OPS: tuple[Op, ...] = ("supersede", "invalidate", "reinstate", "retract")

ops_strategy = st.lists(st.tuples(st.sampled_from(OPS), st.integers(min_value=-1, max_value=5)), max_size=6)
"""A memory's life after its creation: (operation, which earlier ending a reinstatement names; -1: none)."""


def new_event(payload: EventPayload, *, user: str, at: datetime, metadata: dict[str, object] | None = None,
              event_id: uuid.UUID | None = None) -> NewEvent:  # fmt: skip
    """An event as the saga writes it (the correlation and causation do not matter here)."""
    return NewEvent.of(
        payload, correlation_id=f"corr-{user}", causation_id="test", occurred_at=at, user_id=user,
        event_id=event_id, metadata=metadata or {},
    )  # fmt: skip


def created(memory_id: str, user: str, *, text: str | None = None, valid_from: datetime | None = None,
            slot: str | None = "residence", value: str | None = None,
            episode_id: str = "ep") -> ev.MemoryCreated:  # fmt: skip
    """A ``MemoryCreated`` (v3) without a vector."""
    return ev.MemoryCreated(
        memory_id=memory_id, user_id=user, episode_id=episode_id, text=text or f"User fact {memory_id}",
        kind="fact", content_hash=uuid.uuid5(uuid.NAMESPACE_URL, memory_id).hex, vector_sha256=None,
        dimension=None, embedder=None, source="chat", slot=slot, value=value, valid_from=valid_from,
    )  # fmt: skip


@dataclass
class PlannedStream:
    """One memory's stream: its id, user and events in stream order."""

    memory_id: str
    user: str
    events: list[NewEvent]


def plan_stream(memory_id: str, user: str, ops: Sequence[tuple[Op, int]], *, at: datetime,
                stated: bool = True) -> PlannedStream:  # fmt: skip
    """A creation, then ``ops`` in order. ``stated``: the creation states its ``valid_from``."""
    ids = [uuid.uuid5(uuid.NAMESPACE_OID, f"{memory_id}:{i}") for i in range(len(ops) + 1)]
    start = WORLD + timedelta(days=len(memory_id) % 7)
    events = [new_event(created(memory_id, user, valid_from=start if stated else None), user=user, at=at,
                        event_id=ids[0])]  # fmt: skip
    endings: list[str] = []
    for i, (op, pick) in enumerate(ops, start=1):
        end = start + timedelta(days=10 * i)
        payload: EventPayload
        if op == "supersede":
            payload = ev.MemorySuperseded(
                memory_id=memory_id, user_id=user, successor_id=f"{memory_id}-next-{i}", valid_to=end,
                episode_id=f"ep-{i}",
            )  # fmt: skip
            endings.append(str(ids[i]))
        elif op == "invalidate":
            payload = ev.MemoryInvalidated(
                memory_id=memory_id, user_id=user, valid_to=end, episode_id=f"ep-{i}", statement="no longer"
            )
            endings.append(str(ids[i]))
        elif op == "reinstate":
            target = endings[pick % len(endings)] if endings and pick >= 0 else str(uuid.uuid4())
            payload = ev.MemoryReinstated(
                memory_id=memory_id, user_id=user, compensates_event_id=target, reason="saga rejected"
            )
        else:
            payload = ev.MemoryRetracted(
                memory_id=memory_id, user_id=user, compensates_event_id=str(ids[0]), reason="asked",
                retracted_by="ana" if pick % 2 else None,
            )  # fmt: skip
        events.append(new_event(payload, user=user, at=at + timedelta(seconds=i), event_id=ids[i]))
    return PlannedStream(memory_id, user, events)


def by_memory(events: Sequence[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    """Each memory's events, in stream order."""
    streams: dict[str, list[RecordedEvent]] = {}
    for event in sorted(events, key=lambda e: (e.stream_id, e.version)):
        streams.setdefault(event.payload["memory_id"], []).append(event)
    return streams


def expected_listing(
    streams: dict[str, list[RecordedEvent]],
    *,
    as_of: datetime | None = None,
    valid_at: datetime | None = None,
    statuses: Sequence[str] = ("current",),
) -> set[tuple[str, str, datetime | None, str | None]]:
    """The baseline of a memories query: every stream folded in Python with the reference fold.

    (memory id, status, valid_to, superseded_by) of the memories not retracted now, created by
    ``as_of``, in one of ``statuses`` then, and valid at ``valid_at``.
    """
    found: set[tuple[str, str, datetime | None, str | None]] = set()
    for memory_id, events in streams.items():
        now = memory_state(events)
        if now is None or now.status == "retracted":
            continue
        state: MemoryState | None = now if as_of is None else memory_as_of(events, as_of)
        if state is None or state.created_event_id is None or state.status not in statuses:
            continue
        if valid_at is not None and not state.valid_at(valid_at):
            continue
        found.add((memory_id, state.status, state.valid_to, state.superseded_by))
    return found
