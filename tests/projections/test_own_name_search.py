"""A question that names its user is searched as one about "the user" (projections/own_name.py),
on a real PostgreSQL with pgvector, through :func:`memsaga.search.search_memories`."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from eventstore import PostgresEventStore
from memsaga.search import search_memories
from projections import MEMORIES, MEMORY_SEARCH, SearchMode, rebuild
from sagas.memory_extraction.embedders import HashingEmbedder
from tests.projections.memory_events import remember as remember_memory

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EMBEDDER = HashingEmbedder()


async def remember(store: PostgresEventStore, user: str, text: str, **fields: str) -> None:
    await remember_memory(store, user, text, EMBEDDER, kind="identity", **fields)


async def test_the_users_own_name_is_searched_as_the_user(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
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
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    await remember(store, "kim", "User lives in Busan")
    await rebuild(pool, store, MEMORY_SEARCH)  # the memories read model is never built here
    result = await search_memories(pool, store, EMBEDDER, "Where does Kim live?", user_id="kim")
    assert result.searched_as == "Where does Kim live?"
    assert [hit.text for hit in result.hits] == ["User lives in Busan"]
