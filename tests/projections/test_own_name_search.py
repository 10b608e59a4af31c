"""A question that names its user is searched as one about "the user" (projections/own_name.py),
on a real PostgreSQL with pgvector, through :func:`memsaga.search.search_memories`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest_asyncio

from eventstore import NO_STREAM, NewEvent, PostgresBlobStore, PostgresEventStore
from memsaga.bootstrap import build_registry
from memsaga.devstack import DatabaseFactory
from memsaga.search import search_memories
from projections import MEMORIES, MEMORY_SEARCH, SearchMode, rebuild
from sagas.memory_extraction.embedders import HashingEmbedder, vector_to_bytes
from sagas.memory_extraction.events import MemoryCreated
from tests.support import migrated_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EMBEDDER = HashingEmbedder()


@pytest_asyncio.fixture(loop_scope="session")
async def world(
    fresh_pgvector_database: DatabaseFactory,
) -> AsyncIterator[tuple[asyncpg.Pool, PostgresEventStore]]:
    dsn = await migrated_database(fresh_pgvector_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5)
    try:
        yield pool, PostgresEventStore(pool, build_registry())
    finally:
        await pool.close()


async def remember(
    store: PostgresEventStore, user: str, text: str, slot: str | None = None, value: str | None = None
) -> None:
    memory_id = uuid.uuid4().hex
    [vector] = await EMBEDDER.embed([text])
    payload = MemoryCreated(
        memory_id=memory_id, user_id=user, episode_id=f"ep-{user}", text=text, kind="identity",
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        vector_sha256=await PostgresBlobStore(store.pool).put(vector_to_bytes(vector)),
        dimension=EMBEDDER.dimension, embedder=EMBEDDER.name, source="chat", slot=slot, value=value,
    )  # fmt: skip
    event = NewEvent.of(
        payload, correlation_id=f"c-{memory_id}", causation_id="t", occurred_at=T0, user_id=user
    )
    await store.append(f"memory-{memory_id}", [event], expected_version=NO_STREAM)


async def test_the_users_own_name_is_searched_as_the_user(
    world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = world
    await remember(store, "tomas", "User's name is Tomás", slot="name", value="Tomás")
    await remember(store, "tomas", "User lives in Porto, near the river", slot="residence", value="Porto")
    await remember(store, "ana", "User's name is Ana", slot="name", value="Ana")
    await remember(store, "ana", "User lives in Lisbon", slot="residence", value="Lisbon")
    await rebuild(pool, store, MEMORIES)
    await rebuild(pool, store, MEMORY_SEARCH)

    asked = await search_memories(pool, store, EMBEDDER, "Where does Tomás live?", user_id="tomas", k=1)
    assert asked.query == "Where does Tomás live?"
    assert asked.searched_as == "Where does the user live?"
    assert [hit.text for hit in asked.hits] == ["User lives in Porto, near the river"]

    keyword = await search_memories(pool, store, EMBEDDER, "Tomás", user_id="tomas", mode=SearchMode.KEYWORD)
    assert keyword.searched_as == "The user"
    assert keyword.hits == []  # "user" is no keyword: the name alone asks for nothing in particular

    # Only the asking user's own name is theirs: Ana's search keeps "Tomás" as a word.
    other = await search_memories(pool, store, EMBEDDER, "Where does Tomás live?", user_id="ana")
    assert other.searched_as == "Where does Tomás live?"


async def test_without_a_name_memory_or_memories_model_the_question_is_kept(
    world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = world
    await remember(store, "kim", "User lives in Busan")
    await rebuild(pool, store, MEMORY_SEARCH)  # the memories read model is never built here
    result = await search_memories(pool, store, EMBEDDER, "Where does Kim live?", user_id="kim")
    assert result.searched_as == "Where does Kim live?"
    assert [hit.text for hit in result.hits] == ["User lives in Busan"]
