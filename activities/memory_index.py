"""Which memories a user already has, by content hash: the saga's deduplication lookup.

It reads the event store itself, not a projection, so a saga deduplicates correctly even
when the projections lag behind or NATS is down. A memory is live while its stream has a
``MemoryCreated`` and no ``MemoryRetracted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventstore import EventStore
from sagas.memory_extraction.events import MemoryCreated, MemoryRetracted


class MemoryIndex(Protocol):
    """Looks up a user's live memories."""

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's live memories among ``content_hashes``."""
        ...


class StoreMemoryIndex:
    """The lookup as one :meth:`~eventstore.EventStore.find_events` call, on either store.

    On PostgreSQL it is an index lookup on ``events_user_content_hash_idx``
    (sagas/migrations/0001_memory_dedup_index.sql).
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's live memories (the oldest one per hash)."""
        if not content_hashes:
            return {}
        created = await self.store.find_events(
            MemoryCreated.event_type,
            payload_field="content_hash",
            values=content_hashes,
            user_id=user_id,
            unless_stream_has=MemoryRetracted.event_type,
        )
        found: dict[str, str] = {}
        for event in created:
            found.setdefault(event.payload["content_hash"], event.payload["memory_id"])
        return found
