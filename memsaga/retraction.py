"""Retract one memory by hand (``memsaga retract``): a user asks for it to be deleted.

Nothing is deleted: a ``MemoryRetracted`` (with the reason and who asked) is appended to the
memory's stream, and every read model drops the memory. The event's id derives from the
memory id, so retracting twice appends once; a memory already retracted (by a saga's
compensation or an earlier request) is reported as such.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel

from eventstore import EventStore, NewEvent, WrongExpectedVersion
from memsaga.errors import MemsagaError, NotFound
from sagas.memory_extraction.events import MemoryRetracted, memory_stream
from sagas.memory_extraction.lifecycle import memory_state

RETRACTION_NAMESPACE = uuid.UUID("0b6f7a38-51c4-5d0e-8a3b-2f9c4e1d7a60")
"""uuid5 namespace of hand retractions' event ids (never change it)."""


class MemoryNotFound(NotFound):
    """No memory has this id."""

    def __init__(self, memory_id: str) -> None:
        self.memory_id = memory_id
        super().__init__(
            f"no memory {memory_id!r}: `memsaga memories --user USER` lists a user's memories and ids"
        )


class InvalidRetraction(MemsagaError):
    """The retraction request is malformed (the message says what to change)."""


class Retraction(BaseModel):
    """What ``retract`` did: ``retracted`` now, or the memory was ``already_retracted``."""

    memory_id: str
    user_id: str
    outcome: str
    event_id: str | None
    """The ``MemoryRetracted`` (this request's, or the earlier one)."""
    reason: str


async def retract_memory(
    store: EventStore,
    memory_id: str,
    *,
    reason: str,
    retracted_by: str | None = None,
    correlation_id: str | None = None,
) -> Retraction:
    """Append ``MemoryRetracted`` to the memory's stream (once, however often it is asked).

    :raises InvalidRetraction: no reason given, or a NUL character.
    :raises MemoryNotFound: the memory does not exist.
    :raises WrongExpectedVersion: the memory changed under three attempts in a row.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidRetraction("a retraction needs a reason: pass --reason, e.g. --reason 'the user asked'")
    if "\x00" in reason or "\x00" in memory_id:
        raise InvalidRetraction("the memory id or reason contains a NUL character: remove it")
    stream = memory_stream(memory_id)
    conflict: WrongExpectedVersion | None = None
    for _ in range(3):  # a concurrent change to the memory: read it again and decide again
        events = await store.read_stream(stream)
        state = memory_state(events)
        if state is None or state.created_event_id is None:
            raise MemoryNotFound(memory_id)
        earlier = next((e for e in events if e.event_type == MemoryRetracted.event_type), None)
        if earlier is not None:
            return Retraction(
                memory_id=memory_id,
                user_id=state.user_id,
                outcome="already_retracted",
                event_id=str(earlier.event_id),
                reason=earlier.payload["reason"],
            )
        event_id = uuid.uuid5(RETRACTION_NAMESPACE, memory_id)
        payload = MemoryRetracted(
            memory_id=memory_id,
            user_id=state.user_id,
            compensates_event_id=state.created_event_id,
            reason=reason,
            retracted_by=retracted_by,
        )
        event = NewEvent.of(
            payload,
            event_id=event_id,
            correlation_id=correlation_id or f"retract-{memory_id}",
            causation_id=state.created_event_id,
            user_id=state.user_id,
            occurred_at=datetime.now(UTC),
            metadata={"retracted_by": retracted_by} if retracted_by else {},
        )
        try:
            await store.append(stream, [event], expected_version=len(events))
        except WrongExpectedVersion as exc:
            conflict = exc
            continue
        return Retraction(
            memory_id=memory_id,
            user_id=state.user_id,
            outcome="retracted",
            event_id=str(event_id),
            reason=reason,
        )
    assert conflict is not None
    raise conflict
