"""Memories written as the extraction saga writes them (the vector in the blob store, a
``MemoryCreated`` in the memory's own stream), for the search tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from eventstore import NO_STREAM, NewEvent, PostgresBlobStore, PostgresEventStore
from sagas.memory_extraction.embedders import Embedder, vector_to_bytes
from sagas.memory_extraction.events import MemoryCreated, MemoryKind

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def put_vector(store: PostgresEventStore, embedder: Embedder, text: str) -> str:
    """``text``'s vector by ``embedder`` in the blob store; its hash."""
    [vector] = await embedder.embed([text])
    return await PostgresBlobStore(store.pool).put(vector_to_bytes(vector))


async def remember(
    store: PostgresEventStore,
    user: str,
    text: str,
    embedder: Embedder,
    *,
    kind: MemoryKind = "fact",
    at: datetime = T0,
    with_vector: bool = True,
    **fields: Any,
) -> str:
    """Append a ``MemoryCreated`` of ``user`` (correlation ``corr-<id>``, workflow
    ``extract-<id>``); ``fields`` go into the payload (``slot``, ``value``, …). Its memory id."""
    memory_id = uuid.uuid4().hex
    payload = MemoryCreated(
        memory_id=memory_id, user_id=user, episode_id=f"ep-{user}", text=text, kind=kind,
        content_hash=uuid.uuid4().hex,
        vector_sha256=await put_vector(store, embedder, text) if with_vector else None,
        dimension=embedder.dimension if with_vector else None,
        embedder=embedder.name if with_vector else None, source="chat", **fields,
    )  # fmt: skip
    event = NewEvent.of(
        payload, correlation_id=f"corr-{memory_id}", causation_id="test", occurred_at=at,
        user_id=user, metadata={"workflow_id": f"extract-{memory_id}"},
    )  # fmt: skip
    await store.append(f"memory-{memory_id}", [event], expected_version=NO_STREAM)
    return memory_id
