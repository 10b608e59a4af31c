"""Re-embedding in ``memory_search``: vectors of a second model beside the first, and the switch.

Memories are made with the hashing embedder at 256 dimensions (``OLD``); a re-extraction records
vectors of the same embedder at 64 dimensions (``NEW``: another vector space). Search answers in
``OLD`` until the request's ``ReextractionCompleted``, then in ``NEW``; a query is compared with
vectors of its own space only; a rebuild, and any delivery order, give the same state.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from eventstore import EventPayload, NewEvent, PostgresBlobStore, PostgresEventStore, RecordedEvent
from memsaga.query_embedders import QueryEmbedders, ServingEmbedderUnavailable
from memsaga.search import InvalidSearch, SearchResult, search_memories
from projections import MEMORY_SEARCH, SearchMode, SearchQuery, rebuild, search
from projections.search_models import VectorSpace, serving_space
from projections.versions import active_version
from sagas.forgetting import UserForgotten, user_stream
from sagas.memory_extraction.embedders import Embedder, HashingEmbedder, cosine, vector_to_bytes
from sagas.memory_extraction.events import MemoryRetracted
from sagas.reextraction import EpisodeReextracted, MemoryVector, ReextractionCompleted
from tests.projections.memory_events import remember as remember_memory

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OLD, NEW = HashingEmbedder(256), HashingEmbedder(64)
OLD_SPACE, NEW_SPACE = VectorSpace(OLD.name, 256), VectorSpace(NEW.name, 64)
FACTS = ("User lives in Lisbon", "User loves hiking", "User's sister Ana is a nurse")


async def _append(store: PostgresEventStore, stream: str, payload: EventPayload, user: str | None) -> None:
    event = NewEvent.of(payload, correlation_id="corr", causation_id="test", occurred_at=T0, user_id=user)
    await store.append(stream, [event])


async def _blob(pool: asyncpg.Pool, embedder: Embedder, text: str) -> str:
    [vector] = await embedder.embed([text])
    return await PostgresBlobStore(pool).put(vector_to_bytes(vector))


async def remember(
    pool: asyncpg.Pool, store: PostgresEventStore, user: str, text: str, embedder: Embedder
) -> str:
    return await remember_memory(store, user, text, embedder)


async def reembed(
    pool: asyncpg.Pool, store: PostgresEventStore, user: str, request_id: str, memories: dict[str, str]
) -> None:
    """An episode's ``EpisodeReextracted`` with ``NEW`` vectors of ``memories`` ({id: text}), unchanged."""
    vectors = [
        MemoryVector(memory_id=m, vector_sha256=await _blob(pool, NEW, text), dimension=NEW.dimension)
        for m, text in memories.items()
    ]
    payload = EpisodeReextracted(
        request_id=request_id, episode_id=f"ep-{user}", extractor="rules", embedder=NEW.name,
        candidates=[], unchanged=list(memories), vectors=vectors,
    )  # fmt: skip
    await _append(store, f"reextraction-{uuid.uuid4().hex}", payload, user)


async def complete(store: PostgresEventStore, request_id: str, user: str | None, **kwargs: Any) -> None:
    payload = ReextractionCompleted(
        request_id=request_id, scope="user" if user else "all", user_id=user, embedder="hashing",
        embedder_name=NEW.name, dimension=NEW.dimension, done=1, **kwargs,
    )  # fmt: skip
    await _append(store, f"reextraction-{request_id}", payload, user)


async def recall(pool: asyncpg.Pool, store: PostgresEventStore, user: str, question: str) -> SearchResult:
    """A search as ``memsaga search`` runs it, with ``OLD`` as the configured embedder."""
    return await search_memories(pool, store, OLD, question, user_id=user, k=5, mode=SearchMode.VECTOR)


async def user_with_memories(pool: asyncpg.Pool, store: PostgresEventStore) -> tuple[str, dict[str, str]]:
    user = f"u-{uuid.uuid4().hex[:8]}"
    return user, {await remember(pool, store, user, text, OLD): text for text in FACTS}


async def test_search_answers_in_the_old_model_until_the_reextraction_completes(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    user, memories = await user_with_memories(pool, store)
    await rebuild(pool, store, MEMORY_SEARCH)
    before = await recall(pool, store, user, "where does the user live?")
    assert before.embedder == OLD.name and before.hits[0].text == "User lives in Lisbon"

    request = uuid.uuid4().hex
    await reembed(pool, store, user, request, memories)
    await rebuild(pool, store, MEMORY_SEARCH)
    assert await serving_space(pool, MEMORY_SEARCH.views(), user) == OLD_SPACE  # built beside, not served
    [old_vector] = await OLD.embed(["where does the user live?"])
    still = await recall(pool, store, user, "where does the user live?")
    assert still.hits[0].similarity == pytest.approx(
        cosine(old_vector, (await OLD.embed(["User lives in Lisbon"]))[0]), abs=1e-5
    )

    await complete(store, request, user)
    await rebuild(pool, store, MEMORY_SEARCH)
    assert await serving_space(pool, MEMORY_SEARCH.views(), user) == NEW_SPACE
    after = await recall(pool, store, user, "where does the user live?")  # configured: OLD, served: NEW
    [new_vector] = await NEW.embed(["where does the user live?"])
    assert after.hits[0].text == "User lives in Lisbon"
    assert after.hits[0].similarity == pytest.approx(
        cosine(new_vector, (await NEW.embed(["User lives in Lisbon"]))[0]), abs=1e-5
    )
    assert {h.text for h in after.hits} == set(FACTS)


async def test_a_query_is_compared_with_vectors_of_its_own_model_only(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    user, memories = await user_with_memories(pool, store)
    request = uuid.uuid4().hex
    await reembed(pool, store, user, request, dict(list(memories.items())[:1]))  # Lisbon only
    await complete(store, request, user)
    late_old = await remember(pool, store, user, "User plays chess", OLD)  # a saga still on OLD
    late_new = await remember(pool, store, user, "User plays the violin", NEW)
    await rebuild(pool, store, MEMORY_SEARCH)

    found = await recall(pool, store, user, "what does the user play?")
    assert {h.memory_id for h in found.hits} == {next(iter(memories)), late_new}  # NEW vectors only
    [old_vector] = await OLD.embed(["what does the user play?"])
    old_query = SearchQuery(
        user_id=user, text="play", vector=old_vector, embedder=OLD.name, k=10, mode=SearchMode.VECTOR
    )
    old_hits = {h.memory_id for h in await search(pool, old_query)}
    assert late_old in old_hits and late_new not in old_hits  # the OLD space has no NEW vector
    hybrid = await search_memories(pool, store, OLD, "chess", user_id=user, k=10)
    [chess] = [h for h in hybrid.hits if h.memory_id == late_old]
    assert chess.similarity is None and chess.keyword_rank is not None  # found by its words only
    with pytest.raises(InvalidSearch, match="has 256 dimensions, but hashing-v1 vectors have 64"):
        await search_memories(pool, store, OLD, "x", user_id=user, query_vector=old_vector)


async def test_a_failed_episode_keeps_the_model_and_every_user_switches_with_a_request_of_all(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    ana, ana_memories = await user_with_memories(pool, store)
    ben, _ = await user_with_memories(pool, store)
    failed = uuid.uuid4().hex
    await reembed(pool, store, ana, failed, ana_memories)
    await complete(store, failed, None, failed=["reextract-x-ep"])
    await rebuild(pool, store, MEMORY_SEARCH)
    assert await serving_space(pool, MEMORY_SEARCH.views(), ana) == OLD_SPACE

    everyone = uuid.uuid4().hex
    await complete(store, everyone, None)
    await rebuild(pool, store, MEMORY_SEARCH)
    for user in (ana, ben):
        assert await serving_space(pool, MEMORY_SEARCH.views(), user) == NEW_SPACE
    newcomer = f"u-{uuid.uuid4().hex[:8]}"
    await remember(pool, store, newcomer, "User lives in Porto", OLD)
    await rebuild(pool, store, MEMORY_SEARCH)
    assert await serving_space(pool, MEMORY_SEARCH.views(), newcomer) == NEW_SPACE  # every user


async def _state(pool: asyncpg.Pool, users: list[str]) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT 'v' AS t, memory_id AS k, embedder, dimension, embedding::text AS e, position"
        " FROM memsaga_read.memory_vectors WHERE user_id = ANY($1)"
        " UNION ALL SELECT 's', user_id, embedder, dimension, request_id, position"
        " FROM memsaga_read.memory_search_serving WHERE user_id = ANY($1) ORDER BY 1, 2, 3",
        users,
    )
    return [tuple(r) for r in rows]


async def test_a_rebuild_and_any_order_give_the_same_state_and_forgotten_users_stay_forgotten(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    ana, memories = await user_with_memories(pool, store)
    ben, ben_memories = await user_with_memories(pool, store)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    await reembed(pool, store, ana, first, memories)
    await complete(store, first, ana)
    await reembed(pool, store, ana, second, memories)  # the same model again, later
    await complete(store, second, ana)
    await reembed(pool, store, ben, first, ben_memories)
    retracted = next(iter(memories))
    await _append(
        store,
        f"memory-{retracted}",
        MemoryRetracted(memory_id=retracted, user_id=ana, compensates_event_id="x", reason="asked"),
        ana,
    )
    await rebuild(pool, store, MEMORY_SEARCH)
    built = await _state(pool, [ana, ben])
    assert [r[1] for r in built if r[0] == "s"] == sorted([ana, ben])
    assert retracted not in [r[1] for r in built]  # a retracted memory's vectors go

    await rebuild(pool, store, MEMORY_SEARCH)
    assert await _state(pool, [ana, ben]) == built

    active = await active_version(pool, MEMORY_SEARCH.name)
    assert active is not None
    tables = MEMORY_SEARCH.tables_at(active.version)
    events: list[RecordedEvent] = [e async for batch in store.read_all() for e in batch]
    mine = [e for e in events if e.user_id in (ana, ben)]
    await pool.execute(f"DELETE FROM {tables['memory_vectors']}")
    await pool.execute(f"DELETE FROM {tables['memory_search_serving']}")
    async with pool.acquire() as conn:
        for event in reversed(mine):  # the last first: the state must not depend on the order
            await MEMORY_SEARCH.handlers[event.event_type](conn, tables, event)
    assert await _state(pool, [ana, ben]) == built

    await _append(store, user_stream(ana), UserForgotten(key_destroyed=True), ana)
    await rebuild(pool, store, MEMORY_SEARCH)
    assert await _state(pool, [ana]) == []
    assert await _state(pool, [ben]) == [r for r in built if r[1] != ana and r[1] not in memories]


async def test_a_model_this_process_cannot_build_is_a_named_error(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    user = f"u-{uuid.uuid4().hex[:8]}"
    await remember(pool, store, user, "User lives in Lisbon", OLD)
    request = uuid.uuid4().hex
    payload = ReextractionCompleted(
        request_id=request, scope="user", user_id=user, embedder="http", embedder_name="http:big-model",
        dimension=1024, done=1,
    )  # fmt: skip
    await _append(store, f"reextraction-{request}", payload, user)
    await rebuild(pool, store, MEMORY_SEARCH)

    with pytest.raises(ServingEmbedderUnavailable, match=r"searched with http:big-model \(1024 dimensions\)"):
        await search_memories(pool, store, OLD, "where?", user_id=user, embedders=QueryEmbedders(OLD))
    words = await search_memories(pool, store, OLD, "Lisbon", user_id=user, mode=SearchMode.KEYWORD)
    assert [h.text for h in words.hits] == ["User lives in Lisbon"] and words.embedder == "http:big-model"


async def test_a_live_read_model_older_than_version_5_is_searched_with_the_configured_embedder(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    user = f"u-{uuid.uuid4().hex[:8]}"
    await remember(pool, store, user, "User lives in Lisbon", OLD)
    await rebuild(pool, store, MEMORY_SEARCH)
    for view in ("memory_vectors", "memory_search_serving"):  # as version 4 had them: not at all
        await pool.execute(f"DROP VIEW memsaga_read.{view}")

    found = await search_memories(pool, store, OLD, "where does the user live?", user_id=user)
    assert found.embedder == OLD.name and found.hits[0].similarity is not None
