"""Which memories a user already has, by content hash: the saga's deduplication lookup.

It reads the event store itself, not a projection, so a saga deduplicates correctly even
when the projections lag behind or NATS is down. A memory is live while its stream has a
``MemoryCreated`` and no ``MemoryRetracted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from eventstore import EventStore
from sagas.memory_extraction.events import MemoryCreated, MemoryRetracted


class MemoryIndex(Protocol):
    """Looks up a user's live memories."""

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's live memories among ``content_hashes``."""
        ...


# An index lookup on events_user_content_hash_idx (sagas/migrations/0001_memory_dedup_index.sql).
_LIVE_MEMORIES = """
SELECT c.payload->>'content_hash' AS content_hash, c.payload->>'memory_id' AS memory_id
FROM memsaga.events c
WHERE c.event_type = $1 AND c.user_id = $2 AND c.payload->>'content_hash' = ANY($3::text[])
  AND NOT EXISTS (SELECT 1 FROM memsaga.events r WHERE r.stream_id = c.stream_id AND r.event_type = $4)
ORDER BY c.position
"""


class PostgresMemoryIndex:
    """The lookup as one SQL query over ``memsaga.events``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's live memories (the oldest one per hash)."""
        if not content_hashes:
            return {}
        rows = await self.pool.fetch(
            _LIVE_MEMORIES,
            MemoryCreated.event_type,
            user_id,
            list(content_hashes),
            MemoryRetracted.event_type,
        )
        found: dict[str, str] = {}
        for row in rows:
            found.setdefault(row["content_hash"], row["memory_id"])
        return found


class ScanningMemoryIndex:
    """The same lookup by reading every event: for the in-memory store in unit tests."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def live_memories(self, user_id: str, content_hashes: Sequence[str]) -> dict[str, str]:
        """``{content hash: memory id}`` of the user's live memories (the oldest one per hash)."""
        wanted = set(content_hashes)
        created: dict[str, tuple[str, str]] = {}
        retracted: set[str] = set()
        async for batch in self.store.read_all():
            for event in batch:
                if event.event_type == MemoryRetracted.event_type:
                    retracted.add(event.stream_id)
                elif event.event_type == MemoryCreated.event_type and event.user_id == user_id:
                    content_hash = event.payload["content_hash"]
                    if content_hash in wanted:
                        created.setdefault(event.stream_id, (content_hash, event.payload["memory_id"]))
        found: dict[str, str] = {}
        for stream_id, (content_hash, memory_id) in created.items():
            if stream_id not in retracted:
                found.setdefault(content_hash, memory_id)
        return found
