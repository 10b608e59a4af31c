"""Re-extraction on the real stack: an episode's memories after another extractor ran over it.

The test extractor ``test-v2`` is the rules extractor that no longer finds "User loves hiking"
and newly finds "User plays chess": so the hiking memory is retired, a chess memory created,
the Lisbon memory left untouched, and the retracted "sister" memory stays retracted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.memory_extraction import MemoryExtractionActivities
from activities.memory_index import StoreMemoryIndex
from eventstore import PostgresEventStore, RecordedEvent
from memsaga.bootstrap import build_stores, build_worker
from memsaga.client import extraction_result, reextract, retract_memory, start_extraction, start_reextraction
from memsaga.forgetting import forget_user
from memsaga.search import search_memories
from memsaga.settings import Settings
from projections import MEMORY_SEARCH, rebuild
from sagas.memory_extraction.domain import ExtractionOptions, ExtractionRequest
from sagas.memory_extraction.embedders import Embedder, HashingEmbedder, cosine
from sagas.memory_extraction.events import Candidate, memory_stream
from sagas.memory_extraction.extractors import Extractor, RuleBasedExtractor, make_candidate
from sagas.memory_extraction.ports import Heartbeat
from sagas.reextraction import RETRACTED_BY, ReextractionProgress, ReextractionRequest
from tests.workflows.support import EPISODE, FAST_RETRY, eventually
from workflows.reextraction import Reextraction

pytestmark = pytest.mark.timeout(90)


class SecondExtractor:
    """The rules, minus hiking, plus chess: what a changed model might find in the same episode."""

    name = "test-v2"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        found = await RuleBasedExtractor().extract(text, heartbeat=heartbeat)
        kept = [c for c in found if "hiking" not in c.text]
        return [*kept, make_candidate("User plays chess", "preference", {})]


class SlowExtractor:
    """The rules, after a long think that heartbeats (a forget cancels it meanwhile)."""

    name = "test-slow"

    async def extract(self, text: str, *, heartbeat: Heartbeat | None = None) -> list[Candidate]:
        for _ in range(600):
            if heartbeat is not None:
                heartbeat()
            await asyncio.sleep(0.1)
        return await RuleBasedExtractor().extract(text, heartbeat=heartbeat)


def extractor_of(options: ExtractionOptions) -> Extractor:
    extractors: dict[str, Extractor] = {"test-v2": SecondExtractor(), "test-slow": SlowExtractor()}
    return extractors.get(options.extractor, RuleBasedExtractor())


def embedder_of(options: ExtractionOptions) -> Embedder:
    """``hashing-256``: the first sagas of the model-switch test; otherwise 64 dimensions."""
    return HashingEmbedder(256 if options.embedder == "hashing-256" else 64)


@dataclass
class Env:
    client: Client
    store: PostgresEventStore
    settings: Settings

    async def episode(self, user_id: str, embedder: str = "hashing") -> list[str]:
        """Run the first saga over EPISODE for ``user_id``; its memory ids."""
        request = ExtractionRequest(
            user_id=user_id,
            text=EPISODE,
            options=ExtractionOptions(extractor="rules", embedder=embedder, retry=FAST_RETRY),
        )
        handle = await start_extraction(
            self.client, request, workflow_id=uuid.uuid4().hex, settings=self.settings
        )
        return (await extraction_result(self.client, handle.workflow_id)).memory_ids

    async def run(
        self, user_id: str | None, request_id: str, extractor: str = "test-v2"
    ) -> ReextractionProgress:
        request = ReextractionRequest(
            request_id=request_id, user_id=user_id, extractor=extractor, embedder="hashing", retry=FAST_RETRY
        )
        return await reextract(self.client, request, settings=self.settings, poll_seconds=0.2)

    async def memory(self, memory_id: str) -> list[RecordedEvent]:
        return await self.store.read_stream(memory_stream(memory_id))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(saga_settings: Settings, temporal_client: Client) -> AsyncIterator[Env]:
    pool = await asyncpg.create_pool(saga_settings.require_database_url(), min_size=1, max_size=10)
    try:
        store, blobs = build_stores(pool, saga_settings)
        activities = MemoryExtractionActivities(
            store, blobs, StoreMemoryIndex(store), extractor_of, embedder_of
        )
        async with build_worker(temporal_client, activities, task_queue=saga_settings.task_queue):
            yield Env(temporal_client, store, saga_settings)
    finally:
        await pool.close()


async def _by_text(env: Env, memory_ids: list[str]) -> dict[str, str]:
    return {(await env.memory(m))[0].payload["text"]: m for m in memory_ids}


@pytest.mark.asyncio(loop_scope="session")
async def test_reextraction_retires_creates_keeps_and_never_resurrects(env: Env) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    first = await _by_text(env, await env.episode(user))
    lisbon, sister, hiking = (
        first[t] for t in ("User lives in Lisbon", "User's sister Ana is a nurse", "User loves hiking")
    )
    await retract_memory(env.store, sister, reason="user asked", retracted_by=user)
    request_id = uuid.uuid4().hex
    seen: list[ReextractionProgress] = []

    done = await reextract(
        env.client,
        ReextractionRequest(
            request_id=request_id, user_id=user, extractor="test-v2", embedder="hashing", retry=FAST_RETRY
        ),
        settings=env.settings,
        progress=seen.append,
        poll_seconds=0.1,
    )

    assert (done.total, done.done, done.failed) == (1, 1, [])
    assert (done.created, done.retired, done.unchanged, done.kept_retracted) == (1, 1, 1, 1)
    assert seen and seen[-1].finished
    assert [e.event_type for e in await env.memory(lisbon)] == ["MemoryCreated"]  # untouched
    retired = await env.memory(hiking)
    assert [e.event_type for e in retired] == ["MemoryCreated", "MemoryRetracted"]
    assert "no longer finds" in retired[1].payload["reason"]
    assert retired[1].payload["retracted_by"] == RETRACTED_BY + request_id
    assert [e.event_type for e in await env.memory(sister)] == ["MemoryCreated", "MemoryRetracted"]
    created = [
        e
        for e in await env.store.read_correlation(f"reextract-{request_id}")
        if e.event_type == "MemoryCreated"
    ]
    assert [e.payload["text"] for e in created] == ["User plays chess"]
    chess = created[0].payload
    assert chess["episode_id"] == (await env.memory(lisbon))[0].payload["episode_id"]
    assert (chess["embedder"], chess["dimension"]) == ("hashing-v1", 64)
    decided = [
        e
        for e in await env.store.read_correlation(f"reextract-{request_id}")
        if e.event_type == "EpisodeReextracted"
    ]
    assert [v["memory_id"] for v in decided[0].payload["vectors"]] == [lisbon]  # the new model's vector of it

    head = await env.store.head_position()
    again = await env.run(user, request_id)  # the same request: answered, nothing run again
    assert again == done
    assert await env.store.head_position() == head

    second = await env.run(user, uuid.uuid4().hex)  # a new request, same extractor: converged
    assert (second.created, second.retired, second.unchanged, second.kept_retracted) == (0, 0, 2, 1)
    new_events = [e async for batch in env.store.read_all(after_position=head) for e in batch]
    assert {e.event_type for e in new_events} == {
        "ReextractionRequested",
        "EpisodeReextracted",
        "ReextractionCompleted",
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_forgotten_and_unknown_users_are_skipped(env: Env) -> None:
    forgotten = f"user-{uuid.uuid4().hex[:8]}"
    await env.episode(forgotten)
    await forget_user(env.client, env.settings, forgotten)

    skipped = await env.run(forgotten, uuid.uuid4().hex)
    assert (skipped.total, skipped.skipped_forgotten, skipped.created, skipped.retired) == (1, 1, 0, 0)

    nobody = await env.run(f"nobody-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    assert (nobody.total, nobody.done, nobody.finished) == (0, 0, True)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_request_terminated_midway_resumes_without_doing_anything_twice(env: Env) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    first, second = await env.episode(user), await env.episode(user)  # the second: duplicates only
    request = ReextractionRequest(
        request_id=uuid.uuid4().hex, user_id=user, extractor="test-v2", embedder="hashing",
        max_concurrency=1, retry=FAST_RETRY,
    )  # fmt: skip
    handle = await start_reextraction(env.client, request, settings=env.settings)

    async def one_done() -> bool | None:
        return (await handle.query(Reextraction.progress)).done >= 1 or None

    await eventually(one_done, 30, "the first episode re-extracted")
    await handle.terminate("killed midway")
    done = await reextract(env.client, request, settings=env.settings, poll_seconds=0.2)

    assert (done.total, done.done, done.failed) == (2, 2, [])
    assert done.already >= 1 and (done.created, done.retired) == (1, 1)
    for memory_id in first + second:
        ids = [e.event_id for e in await env.memory(memory_id)]
        assert len(ids) == len(set(ids)) <= 2


@pytest.mark.asyncio(loop_scope="session")
async def test_every_user_at_once(env: Env) -> None:
    await env.episode(f"user-{uuid.uuid4().hex[:8]}")

    everyone = await env.run(None, uuid.uuid4().hex, extractor="rules")

    assert everyone.scope == "all" and everyone.total is not None and everyone.total >= 1
    assert (everyone.done, everyone.failed) == (everyone.total, [])


@pytest.mark.asyncio(loop_scope="session")
async def test_a_forget_cancels_the_users_reextraction_and_nothing_of_theirs_is_written_after(
    env: Env,
) -> None:
    user, other = f"user-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    await env.episode(user)
    await env.episode(other)
    request = ReextractionRequest(
        request_id=uuid.uuid4().hex, user_id=user, extractor="test-slow", embedder="hashing", retry=FAST_RETRY
    )
    await start_reextraction(env.client, request, settings=env.settings)
    child = f"reextract-{request.request_id}-"

    async def episode_running() -> str | None:
        query = f"WorkflowType = 'EpisodeReextraction' AND ExecutionStatus = 'Running' AND UserId = '{user}'"
        found = [w.id async for w in env.client.list_workflows(query) if w.id.startswith(child)]
        return found[0] if found else None

    running = await eventually(episode_running, 30, "the episode saga to run")
    forgotten = await forget_user(env.client, env.settings, user)
    done = await reextract(env.client, request, settings=env.settings, poll_seconds=0.2)

    assert running in forgotten.cancelled_workflow_ids
    assert (done.total, done.done, done.skipped_forgotten, done.failed) == (1, 1, 1, [])
    assert (done.created, done.retired, done.unchanged) == (0, 0, 0)
    written = [
        e
        for e in await env.store.read_correlation(f"reextract-{request.request_id}")
        if e.event_type in ("EpisodeReextracted", "MemoryCreated", "MemoryRetracted")
    ]
    assert written == []  # the slow episode was stopped before its decision
    after = [
        e
        for t in ("EpisodeReextracted", "MemoryCreated", "MemoryRetracted")
        for e in await env.store.read_type(t, user_id=user, after_position=forgotten.position)
    ]
    assert after == []


@pytest.mark.asyncio(loop_scope="session")
async def test_search_answers_in_the_new_model_once_the_reextraction_completes(env: Env) -> None:
    pool = env.store.pool
    if not await pool.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"):
        pytest.skip("this PostgreSQL has no pgvector (tests/projections/test_reembedding.py runs it)")
    user = f"user-{uuid.uuid4().hex[:8]}"
    await env.episode(user, embedder="hashing-256")
    await rebuild(pool, env.store, MEMORY_SEARCH)
    old = await search_memories(
        pool, env.store, HashingEmbedder(256), "where does the user live?", user_id=user
    )
    assert (old.embedder, old.hits[0].text) == ("hashing-v1", "User lives in Lisbon")
    [old_hit] = [h for h in old.hits if h.text == "User lives in Lisbon"]

    done = await env.run(user, uuid.uuid4().hex, extractor="rules")  # embedder "hashing": 64 dimensions
    assert (done.done, done.failed, done.unchanged) == (1, [], 3)
    await rebuild(pool, env.store, MEMORY_SEARCH)
    new = await search_memories(
        pool, env.store, HashingEmbedder(256), "where does the user live?", user_id=user
    )
    [new_hit] = [h for h in new.hits if h.text == "User lives in Lisbon"]
    [q] = await HashingEmbedder(64).embed(["where does the user live?"])
    [v] = await HashingEmbedder(64).embed(["User lives in Lisbon"])
    assert new_hit.memory_id == old_hit.memory_id and new_hit.similarity == pytest.approx(
        cosine(q, v), abs=1e-5
    )
