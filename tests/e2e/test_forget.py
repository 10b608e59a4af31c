"""Forgetting a user, end to end (issue 17): canary strings through extraction, review,
compensation, search and a rebuild, then ``ForgetUser``; afterwards the canaries occur nowhere
memsaga keeps data (events, read models, blobs, JetStream, Temporal histories, logs, spans),
other users' read models are unchanged, and no event was deleted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memsaga.client import (
    approve_extraction,
    extraction_outcome,
    reject_extraction,
    start_extraction,
)
from memsaga.devstack.databases import DatabaseFactory
from memsaga.forget_verify import verify_forgotten
from memsaga.forgetting import forget_user
from memsaga.search import search_memories
from projections import EXTRACTIONS, MEMORIES, MEMORY_SEARCH
from projections.consistency import has_applied
from projections.rebuild import rebuild
from sagas.memory_extraction.embedders import HashingEmbedder
from tests.e2e.conftest import Stack, pgvector_stack
from tests.workflows.support import eventually, request

pytestmark = pytest.mark.services

ALLERGY = "zorblaxine"
EMAIL = "ana.k9x@example.org"
TOKEN = "tok_9f8e7d6c5b4a3"
CANARIES = (ALLERGY, EMAIL, TOKEN)
PROJECTIONS = (MEMORIES, EXTRACTIONS, MEMORY_SEARCH)
USER_TABLES = (
    "memories", "memory_lifecycle", "memory_search", "memory_words", "memory_search_lifecycle",
    "memory_vectors", "memory_search_serving", "extractions",
)  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forget_stack(
    fresh_pgvector_database: DatabaseFactory,
    temporal_address: str,
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    _global_span_exporter: InMemorySpanExporter,
) -> AsyncIterator[Stack]:
    async with pgvector_stack(
        fresh_pgvector_database, temporal_address, nats_url, tmp_path_factory, PROJECTIONS
    ) as running:
        yield running


async def caught_up(stack: Stack) -> None:
    head = await stack.store.head_position()

    async def applied() -> bool | None:
        for projection in PROJECTIONS:
            if not await has_applied(stack.pool, stack.store, projection, head):
                return None
        return True

    await eventually(applied, 60, "every projection at the store's head")


async def rows_of(pool: asyncpg.Pool, user_id: str) -> dict[str, str]:
    """A hash of each read-model table's rows of ``user_id`` (through the views of the active versions)."""
    hashes = {}
    for table in USER_TABLES:
        rows = await pool.fetch(
            f"SELECT t::text AS row FROM memsaga_read.{table} t WHERE user_id = $1", user_id
        )
        hashes[table] = hashlib.sha256("\n".join(sorted(r["row"] for r in rows)).encode()).hexdigest()
    return hashes


async def count_rows(pool: asyncpg.Pool, user_id: str) -> int:
    total = 0
    for table in USER_TABLES:
        total += await pool.fetchval(f"SELECT count(*) FROM memsaga_read.{table} WHERE user_id = $1", user_id)
    return int(total)


async def test_after_forgetting_no_canary_is_anywhere_and_others_are_untouched(
    forget_stack: Stack, span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    stack, client, settings = forget_stack, forget_stack.client, forget_stack.settings
    caplog.set_level(logging.DEBUG)
    user, other = f"forget-me-{uuid.uuid4().hex[:6]}", f"keep-me-{uuid.uuid4().hex[:6]}"
    said = f"I'm allergic to {ALLERGY}. My email is {EMAIL}. My token is {TOKEN}. I love hiking."

    # The other user's memories, kept throughout.
    kept = await start_extraction(
        client,
        request("I live in Lisbon. I love cycling.", user_id=other, embedder="hashing"),
        settings=settings,
    )
    await extraction_outcome(client, kept.workflow_id)
    # Extraction with a review that is approved, one rejected (compensated), and one left waiting.
    approved = await start_extraction(
        client, request(said, user_id=user, review=True, embedder="hashing"), settings=settings
    )
    rejected = await start_extraction(
        client, request(said + " Again.", user_id=user, review=True, embedder="hashing"), settings=settings
    )
    waiting = await start_extraction(
        client,
        request(said + " Once more.", user_id=user, review=True, embedder="hashing"),
        settings=settings,
    )
    await asyncio.sleep(1)
    await approve_extraction(client, approved.workflow_id, reviewer="ops", note=f"ok for {EMAIL}")
    await reject_extraction(client, rejected.workflow_id, reviewer="ops", reason=f"not about {ALLERGY}")
    await extraction_outcome(client, approved.workflow_id)
    await extraction_outcome(client, rejected.workflow_id)
    await caught_up(stack)
    # Search and a rebuild see the user's memories.
    found = await search_memories(
        stack.pool, stack.store, HashingEmbedder(256), f"allergic to {ALLERGY}", user_id=user, k=5
    )
    assert any(ALLERGY in hit.text for hit in found.hits)
    await rebuild(stack.pool, stack.store, MEMORY_SEARCH, wait=True)
    assert await count_rows(stack.pool, user) > 0
    before = await rows_of(stack.pool, other)
    event_ids = {r[0] for r in await stack.pool.fetch("SELECT event_id FROM memsaga.events")}

    done = await forget_user(client, settings, user, requested_by="test")

    assert done.key_destroyed and not done.already_forgotten
    assert done.cancelled_workflow_ids == [waiting.workflow_id]
    await caught_up(stack)
    assert await count_rows(stack.pool, user) == 0
    assert await rows_of(stack.pool, other) == before
    after_ids = {r[0] for r in await stack.pool.fetch("SELECT event_id FROM memsaga.events")}
    assert event_ids <= after_ids  # nothing deleted: facts stay, unreadable

    await rebuild(stack.pool, stack.store, MEMORY_SEARCH, wait=True)  # a rebuild after forgetting
    await rebuild(stack.pool, stack.store, MEMORIES, wait=True)
    assert await count_rows(stack.pool, user) == 0
    assert await rows_of(stack.pool, other) == before

    nc = await nats.connect(settings.require_nats_url())
    try:
        for canary in CANARIES:
            result = await verify_forgotten(
                pool=stack.pool, js=nc.jetstream(), stream=settings.nats_stream, temporal=client,
                user_id=user, canary=canary, logs=[],
            )  # fmt: skip
            assert result.clean, [p for p in result.places if p.count]
            histories = next(p for p in result.places if p.place.startswith("Temporal"))
            assert histories.looked_at >= 4  # the user's three sagas and the forget saga were searched
    finally:
        await nc.close()
    # Old events read as erased, never as an exception.
    [recorded] = [
        e
        for e in await stack.store.read_correlation(approved.workflow_id)
        if e.event_type == "EpisodeRecorded"
    ]
    assert recorded.payload["text"] == "[erased]" and recorded.metadata["erased"] is True

    again = await forget_user(client, settings, user)
    assert again.already_forgotten and again.forgotten_event_id == done.forgotten_event_id

    for canary in CANARIES:  # neither a log line nor a span of the whole run carried one
        assert not [r for r in caplog.records if canary in r.getMessage()]
        for span in span_exporter.get_finished_spans():
            assert not [v for v in (span.attributes or {}).values() if canary in str(v)], span.name


async def test_a_canary_in_plain_text_is_found(forget_stack: Stack) -> None:
    """The check can fail: a string stored unsealed (a plain blob) is counted."""
    canary = f"plain-{uuid.uuid4().hex}"
    await stack_blob(forget_stack, canary)
    result = await verify_forgotten(
        pool=forget_stack.pool, js=None, stream="", temporal=None, user_id="nobody", canary=canary, logs=[],
    )  # fmt: skip
    assert not result.clean
    assert next(p for p in result.places if p.place.startswith("blob")).count == 1


async def stack_blob(stack: Stack, text: str) -> None:
    await stack.blobs.put(text.encode())


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    settings = stack.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSAGA_")}
    env |= {
        "MEMSAGA_DATABASE_URL": settings.require_database_url(),
        "MEMSAGA_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MEMSAGA_NATS_URL": settings.require_nats_url(),
        "MEMSAGA_NATS_STREAM": settings.nats_stream,
        "MEMSAGA_TASK_QUEUE": settings.task_queue,
        "MEMSAGA_STATE_DIR": str(settings.state_dir),
        "MEMSAGA_MASTER_KEY": os.environ["MEMSAGA_MASTER_KEY"],
    }
    argv = [sys.executable, "-m", "memsaga", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_forgets_verifies_and_refuses_bad_requests(forget_stack: Stack) -> None:
    user = f"cli-forget-{uuid.uuid4().hex[:6]}"
    started = await start_extraction(
        forget_stack.client,
        request(f"I love {ALLERGY}. I live in Porto.", user_id=user, embedder="hashing"),
        settings=forget_stack.settings,
    )
    await asyncio.wait_for(extraction_outcome(forget_stack.client, started.workflow_id), 60)

    found = await asyncio.to_thread(
        cli, forget_stack, "forget", "--verify", "--user", user, "--canary", ALLERGY, "--json"
    )
    assert found.returncode == 1, found.stderr  # not forgotten yet: the read models hold it
    assert json.loads(found.stdout)["clean"] is False

    done = await asyncio.to_thread(cli, forget_stack, "forget", "--user", user, "--by", "ops", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["user_id"], result["key_destroyed"], result["already_forgotten"]) == (user, True, False)
    again = await asyncio.to_thread(cli, forget_stack, "forget", "--user", user)
    assert again.returncode == 0 and "forgotten already" in again.stdout

    await caught_up(forget_stack)
    clean = await asyncio.to_thread(
        cli, forget_stack, "forget", "--verify", "--user", user, "--canary", ALLERGY, "--json"
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    shape = json.loads(clean.stdout)
    assert shape["clean"] is True and {"place", "count", "looked_at"} == set(shape["places"][0])

    for bad, needle in (
        (["forget", "--user", " padded "], "whitespace"),
        (["forget", "--verify", "--user", user], "--canary"),
        (["forget", "--user", user, "--canary", "x"], "--verify"),
    ):
        refused = await asyncio.to_thread(cli, forget_stack, *bad)
        assert refused.returncode == 2 and needle in refused.stderr, (bad, refused.stderr)
        assert "Traceback" not in refused.stderr
