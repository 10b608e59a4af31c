"""Which memories a user has now: the saga's deduplication and reconciliation lookups.

They read the event store itself, not a projection, so a saga decides correctly even when
the projections lag behind or NATS is down. Candidates are found by an index lookup on the
``MemoryCreated`` payload (content hash or slot); each found memory's stream is then folded
(:mod:`sagas.memory_extraction.lifecycle`) and only current memories count: a superseded,
invalidated or retracted memory is no longer something the user "has".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventstore import EventStore, RecordedEvent
from sagas.memory_extraction.events import MemoryCreated, MemoryRetracted, SlotMemory, memory_stream
from sagas.memory_extraction.lifecycle import MemoryState, memory_state


class MemoryIndex(Protocol):
    """Looks up a user's current memories."""

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's current memories among ``content_hashes``."""
        ...

    async def current_by_slot(self, user_id: str, slots: Sequence[str]) -> list[SlotMemory]:
        """The user's current memories of ``slots``, oldest first."""
        ...


class StoreMemoryIndex:
    """The lookups as :meth:`~eventstore.EventStore.find_events` calls, on either store.

    On PostgreSQL they are index lookups on ``events_user_content_hash_idx`` and
    ``events_user_slot_idx`` (sagas/migrations/).
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's current memories (the oldest one per hash)."""
        found: dict[str, str] = {}
        for event, _ in await self._current(user_id, "content_hash", content_hashes):
            found.setdefault(event.payload["content_hash"], event.payload["memory_id"])
        return found

    async def current_by_slot(self, user_id: str, slots: Sequence[str]) -> list[SlotMemory]:
        """The user's current memories of ``slots``, in the order they were created."""
        return [
            SlotMemory(
                memory_id=state.memory_id,
                slot=state.slot or "",
                value=state.value,
                polarity=state.polarity,
                text=state.text or "",
            )
            for _, state in await self._current(user_id, "slot", slots)
        ]

    async def _current(
        self, user_id: str, field: str, values: Sequence[str]
    ) -> list[tuple[RecordedEvent, MemoryState]]:
        if not values:
            return []
        created = await self.store.find_events(
            MemoryCreated.event_type,
            payload_field=field,
            values=sorted(set(values)),
            user_id=user_id,
            unless_stream_has=MemoryRetracted.event_type,
        )
        current = []
        for event in created:
            state = memory_state(await self.store.read_stream(memory_stream(event.payload["memory_id"])))
            if state is not None and state.is_current:
                current.append((event, state))
        return current
