"""The ``memory_search`` read model on a real PostgreSQL with pgvector: rows, tombstones, search."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from adapters.wordllama_embedder import WordLlamaEmbedder
from eventstore import NewEvent, PostgresEventStore, RecordedEvent
from memsaga.search import InvalidSearch, search_memories
from projections import (
    MEMORIES,
    MEMORY_SEARCH,
    ExtensionMissing,
    ProjectionNotInitialized,
    SearchMode,
    SearchQuery,
    ensure_built,
    rebuild,
    search,
)
from projections.consistency import applied_position, has_applied
from projections.extensions import split_by_extensions
from projections.memory_search import on_memory_created, on_memory_retracted
from projections.parked import list_parked
from projections.versions import active_version
from sagas.memory_extraction.embedders import bytes_to_vector, vector_to_bytes
from sagas.memory_extraction.events import (
    ExtractionCompleted,
    MemoryInvalidated,
    MemoryKind,
    MemoryReinstated,
    MemoryRetracted,
    MemorySuperseded,
)
from tests.projections.memory_events import remember as remember_memory

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EMBEDDER = WordLlamaEmbedder()


async def remember(
    store: PostgresEventStore,
    pool: asyncpg.Pool,
    user: str,
    text: str,
    kind: MemoryKind = "fact",
    *,
    at: datetime = T0,
    with_vector: bool = True,
) -> str:
    """Append a ``MemoryCreated`` (with its vector in the blob store, as the saga does); its id."""
    return await remember_memory(store, user, text, EMBEDDER, kind=kind, at=at, with_vector=with_vector)


async def retract(store: PostgresEventStore, user: str, memory_id: str) -> None:
    payload = MemoryRetracted(memory_id=memory_id, user_id=user, compensates_event_id="x", reason="test")
    event = NewEvent.of(payload, correlation_id="c", causation_id="t", occurred_at=T0, user_id=user)
    await store.append(f"memory-{memory_id}", [event], expected_version=1)


async def ask(pool: asyncpg.Pool, user: str, question: str, **kwargs: object) -> list[str]:
    [vector] = await EMBEDDER.embed([question])
    query = SearchQuery(user_id=user, text=question, vector=vector, embedder=EMBEDDER.name)
    return [hit.text for hit in await search(pool, replace(query, **kwargs))]  # type: ignore[arg-type]


async def test_a_question_finds_its_memory_for_that_user_only(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    for user, city in (("ana", "Utrecht"), ("ben", "Lisbon")):
        await remember(store, pool, user, f"User lives in {city}", "identity")
        await remember(store, pool, user, "User loves cycling", "preference")
        await remember(store, pool, user, "User is allergic to peanuts", "health")
    await rebuild(pool, store, MEMORY_SEARCH)

    assert (await ask(pool, "ana", "where does the user live?"))[0] == "User lives in Utrecht"
    assert (await ask(pool, "ben", "where does the user live?"))[0] == "User lives in Lisbon"
    every_hit = await ask(pool, "ana", "Lisbon Utrecht peanuts cycling", k=50)
    assert sorted(every_hit) == ["User is allergic to peanuts", "User lives in Utrecht", "User loves cycling"]
    assert await ask(pool, "nobody", "where does the user live?") == []
    assert await ask(pool, "ana", "anything", kinds=("health",), k=50) == ["User is allergic to peanuts"]


async def test_hits_carry_scores_and_provenance(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    memory_id = await remember(store, pool, "ana", "User works at Acme as an engineer", "identity")
    await rebuild(pool, store, MEMORY_SEARCH)
    [vector] = await EMBEDDER.embed(["who employs the user at Acme?"])

    [hit] = await search(
        pool,
        SearchQuery(
            user_id="ana", text="who employs the user at Acme?", vector=vector, embedder=EMBEDDER.name
        ),
    )
    assert (hit.memory_id, hit.kind, hit.created_at, hit.valid_from) == (memory_id, "identity", T0, T0)
    assert (hit.episode_id, hit.correlation_id, hit.workflow_id) == (
        "ep-ana",
        f"corr-{memory_id}",
        f"extract-{memory_id}",
    )
    assert hit.embedder == EMBEDDER.name and hit.similarity is not None and hit.keyword_rank is not None
    assert hit.score == pytest.approx(2 / 61)  # first in both rankings


async def test_keyword_and_vector_rankings_alone(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    await remember(store, pool, "ana", "User lives in Utrecht", "identity")
    await remember(store, pool, "ana", "User's sister is Ana", "relation")
    await remember(store, pool, "ana", "User keeps no vector here", with_vector=False)
    await rebuild(pool, store, MEMORY_SEARCH)

    assert await ask(pool, "ana", "vector", mode=SearchMode.KEYWORD) == ["User keeps no vector here"]
    assert await ask(pool, "ana", "zzzz qqqq", mode=SearchMode.KEYWORD) == []
    nearest = await ask(pool, "ana", "which city is home?", mode=SearchMode.VECTOR, k=3)
    assert nearest[0] == "User lives in Utrecht"
    assert "User keeps no vector here" not in nearest  # no vector, no vector ranking
    assert await ask(pool, "ana", "home", valid_at=T0 - timedelta(days=1)) == []


async def test_in_a_hybrid_search_words_count_only_when_they_cover_half_the_question(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    await remember(store, pool, "maya", "User is studying for a master's in nursing science")
    await remember(store, pool, "maya", "User works as a paediatric nurse at the Wilhelmina")
    await remember(store, pool, "maya", "User lives in Utrecht")
    await rebuild(pool, store, MEMORY_SEARCH)
    question = "What degree is she working towards?"  # lexemes degre, work, toward

    # Alone, the keyword ranking takes any word: "working" ~ "works as a nurse".
    assert await ask(pool, "maya", question, mode=SearchMode.KEYWORD) == [
        "User works as a paediatric nurse at the Wilhelmina"
    ]
    [vector] = await EMBEDDER.embed([question])
    query = SearchQuery(user_id="maya", text=question, vector=vector, embedder=EMBEDDER.name, k=3)
    hits = await search(pool, query)
    assert hits[0].text == "User is studying for a master's in nursing science"
    # One word of three: below MINIMUM_SHOULD_MATCH, so not in the fused keyword ranking at all.
    assert all(hit.keyword_rank is None for hit in hits)

    # A word covering the whole question still counts.
    [where] = await EMBEDDER.embed(["Where does she live?"])
    [lives] = await search(pool, replace(query, text="Where does she live?", vector=where, k=1))
    assert lives.text == "User lives in Utrecht" and lives.keyword_rank is not None


async def test_a_search_before_the_projection_ever_ran_says_to_run_it(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, _ = search_world
    await pool.execute("DROP EXTENSION IF EXISTS vector CASCADE")  # as in a database it never ran on
    for mode in SearchMode:
        query = SearchQuery(user_id="ana", text="where?", vector=[0.1] * 256, embedder="e", mode=mode)
        with pytest.raises(ProjectionNotInitialized, match="memsaga project memory_search"):
            await search(pool, query)


async def test_the_vector_is_the_one_in_the_blob_store(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    memory_id = await remember(store, pool, "ana", "User loves cycling")
    await rebuild(pool, store, MEMORY_SEARCH)

    stored = await pool.fetchval(
        "SELECT embedding::text FROM memsaga_read.memory_search WHERE memory_id = $1", memory_id
    )
    [expected] = await EMBEDDER.embed(["User loves cycling"])
    as_float32 = bytes_to_vector(vector_to_bytes(expected))
    assert [float(x) for x in stored.strip("[]").split(",")] == pytest.approx(as_float32, rel=1e-6)


async def test_a_retracted_memory_leaves_and_a_late_creation_does_not_bring_it_back(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    kept = await remember(store, pool, "ana", "User lives in Utrecht", "identity")
    gone = await remember(store, pool, "ana", "User lives in Lisbon", "identity")
    await retract(store, "ana", gone)
    await rebuild(pool, store, MEMORY_SEARCH)

    assert await ask(pool, "ana", "where does the user live?", k=5) == ["User lives in Utrecht"]
    row = await pool.fetchrow(
        "SELECT text, embedding FROM memsaga_read.memory_search WHERE memory_id = $1", gone
    )
    assert row is not None and (row["text"], row["embedding"]) == (None, None)

    # Disorder and repeats: the retraction first, then the creation (twice), then the retraction again.
    events = {e.event_type: e for e in await store.read_stream(f"memory-{gone}")}
    active = await active_version(pool, MEMORY_SEARCH.name)
    assert active is not None and kept
    tables = MEMORY_SEARCH.tables_at(active.version)
    async with pool.acquire() as conn:
        await on_memory_retracted(conn, tables, events["MemoryRetracted"])
        await on_memory_created(conn, tables, events["MemoryCreated"])
        await on_memory_created(conn, tables, events["MemoryCreated"])
        await on_memory_retracted(conn, tables, events["MemoryRetracted"])
    assert await ask(pool, "ana", "Lisbon", k=5) == ["User lives in Utrecht"]


async def test_a_memory_whose_vector_blob_is_missing_is_parked(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    first = await remember(store, pool, "ana", "User loves cycling")
    second = await remember(store, pool, "ana", "User lives in Utrecht")
    await remember(store, pool, "ana", "User keeps no vector here", with_vector=False)
    await pool.execute("DELETE FROM memsaga.blobs")  # (a test only: the store never deletes blobs)
    result = await rebuild(pool, store, MEMORY_SEARCH)

    parked = await list_parked(pool, projection=MEMORY_SEARCH.name)
    assert result.parked == 2 and all("blob store does not hold" in p.error for p in parked)
    assert {p.stream_id for p in parked} == {f"memory-{first}", f"memory-{second}"}
    assert await ask(pool, "ana", "vector") == ["User keeps no vector here"]


async def test_a_projection_needing_a_missing_extension_refuses_to_build(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    needy = replace(MEMORY_SEARCH, name="needy_search", extensions=("no_such_extension",))

    with pytest.raises(ExtensionMissing, match="no_such_extension") as caught:
        await ensure_built(pool, store, needy)
    assert "the other projections work without it" in str(caught.value)
    assert await active_version(pool, "needy_search") is None


async def test_running_every_projection_leaves_out_only_those_the_server_cannot_run(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, _ = search_world
    needy = replace(MEMORY_SEARCH, name="needy_search", extensions=("no_such_extension",))

    runnable, refused = await split_by_extensions(pool, [MEMORIES, needy, MEMORY_SEARCH])
    assert runnable == [MEMORIES, MEMORY_SEARCH]
    assert [(r.projection, r.extension) for r in refused] == [("needy_search", "no_such_extension")]


async def test_applied_means_no_event_of_its_types_is_left_up_to_the_position(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    assert not await has_applied(pool, store, MEMORY_SEARCH, 1)  # never built
    await remember(store, pool, "ana", "User lives in Utrecht")
    await rebuild(pool, store, MEMORY_SEARCH)
    other = NewEvent.of(
        ExtractionCompleted(candidates=1, duplicates=0, memories_created=1, memory_ids=["m"]),
        correlation_id="c",
        causation_id="c",
        occurred_at=T0,
    )
    done = await store.append("episode-x", [other])  # a type memory_search does not consume
    checkpoint = await applied_position(pool, MEMORY_SEARCH)

    assert checkpoint is not None and checkpoint < done.positions[-1]
    assert await has_applied(pool, store, MEMORY_SEARCH, checkpoint)
    assert await has_applied(pool, store, MEMORY_SEARCH, done.positions[-1])
    await remember(store, pool, "ana", "User loves cycling")  # not applied: no runner
    assert not await has_applied(pool, store, MEMORY_SEARCH, await store.head_position())


# --- Memories that change (version 3) ------------------------------------------------------------

MAY_2024 = datetime(2024, 5, 1, tzinfo=UTC)
MOVED = datetime(2025, 3, 10, 18, 0, tzinfo=UTC)


async def end(store: PostgresEventStore, user: str, memory_id: str, payload: Any) -> RecordedEvent:
    """Append a lifecycle event to the memory's stream; the stored event."""
    event = NewEvent.of(payload, correlation_id="c2", causation_id="t", occurred_at=MOVED, user_id=user)
    await store.append(f"memory-{memory_id}", [event])
    [stored] = await store.read_stream(
        f"memory-{memory_id}", from_version=await store.stream_version(f"memory-{memory_id}")
    )
    return stored


async def lisbon_then_berlin(store: PostgresEventStore, pool: asyncpg.Pool, user: str) -> tuple[str, str]:
    lisbon = await remember(
        store, pool, user, "User lives in Lisbon", "identity", at=MAY_2024 + timedelta(days=19)
    )
    berlin = await remember(store, pool, user, "User lives in Berlin", "identity", at=MOVED)
    await end(store, user, lisbon, MemorySuperseded(
        memory_id=lisbon, user_id=user, successor_id=berlin, valid_to=MOVED, episode_id="ep-berlin",
    ))  # fmt: skip
    return lisbon, berlin


async def hits(pool: asyncpg.Pool, user: str, question: str, **kwargs: object) -> list[tuple[str, str, Any]]:
    [vector] = await EMBEDDER.embed([question])
    query = SearchQuery(user_id=user, text=question, vector=vector, embedder=EMBEDDER.name, k=10)
    found = await search(pool, replace(query, **kwargs))  # type: ignore[arg-type]
    return [(h.text, h.status, h.valid_to) for h in found]


@pytest.mark.parametrize("mode", list(SearchMode))
async def test_a_default_search_never_returns_a_superseded_memory_and_valid_at_finds_it(
    search_world: tuple[asyncpg.Pool, PostgresEventStore], mode: SearchMode
) -> None:
    pool, store = search_world
    await lisbon_then_berlin(store, pool, "ana")
    await remember(store, pool, "ana", "User loves cycling", "preference", at=MAY_2024)
    await rebuild(pool, store, MEMORY_SEARCH)

    now = await hits(pool, "ana", "where does the user live? Lisbon Berlin", mode=mode)
    assert ("User lives in Berlin", "current", None) in now
    assert all(text != "User lives in Lisbon" for text, _, _ in now)
    then = await hits(pool, "ana", "where does the user live? Lisbon Berlin", mode=mode,
                      valid_at=datetime(2024, 6, 1, tzinfo=UTC))  # fmt: skip
    assert ("User lives in Lisbon", "superseded", MOVED) in then
    assert all(text != "User lives in Berlin" for text, _, _ in then)  # not true yet then
    later = await hits(pool, "ana", "Lisbon Berlin", mode=mode, valid_at=MOVED + timedelta(days=1))
    assert [t for t, _, _ in later if "lives" in t] == ["User lives in Berlin"]


async def test_an_invalidated_memory_is_found_only_while_it_was_true(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    coffee = await remember(store, pool, "ana", "User drinks coffee", "preference", at=MAY_2024)
    await end(store, "ana", coffee, MemoryInvalidated(
        memory_id=coffee, user_id="ana", valid_to=MOVED, episode_id="ep-2", statement="no more coffee",
    ))  # fmt: skip
    await rebuild(pool, store, MEMORY_SEARCH)

    assert await ask(pool, "ana", "coffee") == []
    assert await ask(pool, "ana", "coffee", valid_at=MOVED - timedelta(days=1)) == ["User drinks coffee"]
    assert await ask(pool, "ana", "coffee", valid_at=MOVED) == []


async def test_lifecycle_events_in_any_order_end_as_the_stream_in_order(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    """Supersession, reinstatement (compensation), supersession again, then a retraction of the
    successor: every order of delivery, repeats included, ends as the fold of the streams."""
    pool, store = search_world
    lisbon, berlin = await lisbon_then_berlin(store, pool, "ana")
    [first_end] = [
        e for e in await store.read_stream(f"memory-{lisbon}") if e.event_type == "MemorySuperseded"
    ]
    await end(store, "ana", lisbon, MemoryReinstated(
        memory_id=lisbon, user_id="ana", compensates_event_id=str(first_end.event_id), reason="rejected",
    ))  # fmt: skip
    await end(store, "ana", lisbon, MemorySuperseded(
        memory_id=lisbon, user_id="ana", successor_id=berlin, valid_to=MOVED, episode_id="ep-again",
    ))  # fmt: skip
    events = [e async for batch in store.read_all() for e in batch]
    await rebuild(pool, store, MEMORY_SEARCH)
    expected = await pool.fetch("SELECT * FROM memsaga_read.memory_search ORDER BY memory_id")
    words = await pool.fetch("SELECT * FROM memsaga_read.memory_words ORDER BY memory_id")
    assert [(r["status"], r["valid_to"]) for r in expected if r["memory_id"] == lisbon] == [
        ("superseded", MOVED)
    ]

    active = await active_version(pool, MEMORY_SEARCH.name)
    assert active is not None
    rng = random.Random(14)
    for attempt in range(6):
        tables = MEMORY_SEARCH.tables_at(active.version)
        await pool.execute(f"TRUNCATE {', '.join(tables.values())}")
        order = events + rng.sample(events, 3)
        rng.shuffle(order)
        async with pool.acquire() as conn:
            for event in order:
                await MEMORY_SEARCH.handlers[event.event_type](conn, tables, event)
        assert await pool.fetch("SELECT * FROM memsaga_read.memory_search ORDER BY memory_id") == expected, (
            attempt
        )
        assert await pool.fetch("SELECT * FROM memsaga_read.memory_words ORDER BY memory_id") == words, (
            attempt
        )


async def test_search_memories_takes_valid_at_through_to_the_read_model(
    search_world: tuple[asyncpg.Pool, PostgresEventStore],
) -> None:
    pool, store = search_world
    await lisbon_then_berlin(store, pool, "ana")
    await rebuild(pool, store, MEMORY_SEARCH)
    june = datetime(2024, 6, 1, tzinfo=UTC)

    def run(**kwargs: Any) -> Any:
        return search_memories(
            pool, store, EMBEDDER, "Lisbon Berlin", user_id="ana", mode=SearchMode.KEYWORD, **kwargs
        )

    assert [(h.text, h.status) for h in (await run()).hits] == [("User lives in Berlin", "current")]
    then = (await run(valid_at=june)).hits
    assert [(h.text, h.status, h.valid_to) for h in then] == [("User lives in Lisbon", "superseded", MOVED)]
    with pytest.raises(InvalidSearch, match="valid_at needs a time zone"):
        await run(valid_at=june.replace(tzinfo=None))
