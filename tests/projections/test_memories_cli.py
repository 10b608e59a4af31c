"""``memsaga memories`` in both kinds of time and ``memsaga history``, on a real PostgreSQL.

The story is the one of docs/memories.md: "I moved to Lisbon in May 2024", then, in March
2025, "Actually, I moved from Lisbon to Berlin", which supersedes it. Events are written
straight into the store as the saga writes them (its episodes, review and metadata too).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio
from typer.testing import CliRunner

from eventstore import NO_STREAM, NewEvent, PostgresBlobStore, PostgresEventStore, RecordedEvent
from memsaga.bootstrap import build_registry
from memsaga.cli import app
from memsaga.devstack import DatabaseFactory
from memsaga.history import memory_history
from projections import MEMORIES, rebuild
from projections.memories import query_memories
from sagas.memory_extraction import events as ev
from tests.support import migrated_database

LISBON_SAID = datetime(2024, 5, 20, 10, 0, tzinfo=UTC)
MAY_2024 = datetime(2024, 5, 1, tzinfo=UTC)
BERLIN_SAID = datetime(2025, 3, 10, 18, 0, tzinfo=UTC)
UI = "http://temporal.example:8233"


@dataclass
class Story:
    dsn: str
    pool: asyncpg.Pool
    store: PostgresEventStore
    user: str
    lisbon: str
    berlin: str
    between: datetime  # after Lisbon was recorded, before Berlin was
    lisbon_episode: str
    berlin_episode: str


async def episode(
    store: PostgresEventStore, user: str, workflow_id: str, text: str | None, *, at: datetime,
    reviewer: str | None = None, sha: str | None = None,
) -> str:  # fmt: skip
    """An episode stream as the saga leaves it: requested, recorded, (approved)."""
    episode_id = uuid.uuid4().hex
    meta = {"workflow_id": workflow_id}
    payloads: list[Any] = [
        ev.ExtractionRequested(workflow_id=workflow_id, episode_id=episode_id, source="chat",
                               review_requested=reviewer is not None, extractor="rules", embedder="hashing"),
        ev.EpisodeRecorded(episode_id=episode_id, source="chat", text=text, text_sha256=sha or "0" * 64,
                           text_bytes=len(text or "")),
    ]  # fmt: skip
    if reviewer is not None:
        payloads.append(ev.ReviewApproved(reviewer=reviewer))
    events = [
        NewEvent.of(p, correlation_id=workflow_id, causation_id=workflow_id, occurred_at=at, user_id=user,
                    metadata=meta)
        for p in payloads
    ]  # fmt: skip
    await store.append(ev.episode_stream(episode_id), events, expected_version=NO_STREAM)
    return episode_id


async def memory_event(
    store: PostgresEventStore, memory_id: str, payload: Any, *, user: str, workflow_id: str, at: datetime
) -> RecordedEvent:
    event = NewEvent.of(
        payload,
        correlation_id=workflow_id,
        causation_id=workflow_id,
        occurred_at=at,
        user_id=user,
        metadata={"workflow_id": workflow_id, "workflow_run_id": "run-1"},
    )
    await store.append(ev.memory_stream(memory_id), [event])
    [stored] = await store.read_stream(
        ev.memory_stream(memory_id), from_version=await store.stream_version(ev.memory_stream(memory_id))
    )
    return stored


def created(
    memory_id: str, user: str, episode_id: str, text: str, value: str, valid_from: datetime | None
) -> Any:
    return ev.MemoryCreated(
        memory_id=memory_id,
        user_id=user,
        episode_id=episode_id,
        text=text,
        kind="identity",
        content_hash=uuid.uuid4().hex,
        vector_sha256=None,
        dimension=None,
        embedder=None,
        source="chat",
        slot="residence",
        value=value,
        valid_from=valid_from,
    )


async def write_story(
    store: PostgresEventStore, pool: asyncpg.Pool, user: str
) -> tuple[str, str, datetime, str, str]:
    """Lisbon (stated May 2024, reviewed by ana), then Berlin superseding it (text in the blob store)."""
    lisbon, berlin = f"mem-lisbon-{user}", f"mem-berlin-{user}"
    first = await episode(
        store,
        user,
        f"extract-lisbon-{user}",
        "I moved to Lisbon in May 2024.",
        at=LISBON_SAID,
        reviewer="ana",
    )
    await memory_event(
        store,
        lisbon,
        created(lisbon, user, first, "User lives in Lisbon", "Lisbon", MAY_2024),
        user=user,
        workflow_id=f"extract-lisbon-{user}",
        at=LISBON_SAID,
    )
    await asyncio.sleep(0.01)
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    said = "Actually, I moved from Lisbon to Berlin."
    sha = await PostgresBlobStore(pool).put(said.encode())
    second = await episode(store, user, f"extract-berlin-{user}", None, at=BERLIN_SAID, sha=sha)
    workflow = f"extract-berlin-{user}"
    await memory_event(
        store,
        berlin,
        created(berlin, user, second, "User lives in Berlin", "Berlin", None),
        user=user,
        workflow_id=workflow,
        at=BERLIN_SAID,
    )
    await memory_event(
        store,
        lisbon,
        ev.MemorySuperseded(
            memory_id=lisbon, user_id=user, successor_id=berlin, valid_to=BERLIN_SAID, episode_id=second
        ),
        user=user,
        workflow_id=workflow,
        at=BERLIN_SAID,
    )
    return lisbon, berlin, between, first, second


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def story(fresh_database: DatabaseFactory) -> AsyncIterator[Story]:
    dsn = await migrated_database(fresh_database)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    store = PostgresEventStore(pool, build_registry())
    try:
        user = "u-1"
        lisbon, berlin, between, first, second = await write_story(store, pool, user)
        await rebuild(pool, store, MEMORIES)
        yield Story(dsn, pool, store, user, lisbon, berlin, between, first, second)
    finally:
        await pool.close()


async def cli(story: Story, tmp_path: Path, *args: str, code: int = 0) -> Any:
    environ = {
        "MEMSAGA_DATABASE_URL": story.dsn,
        "MEMSAGA_STATE_DIR": str(tmp_path),
        "MEMSAGA_TEMPORAL_UI_URL": UI,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environ)
    text = result.stdout + result.stderr
    assert result.exit_code == code, f"memsaga {' '.join(args)} -> {result.exit_code}:\n{text}"
    assert "Traceback" not in text
    return json.loads(result.stdout) if "--json" in args else text


def brief(memories: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(m["text"], m["status"], m["valid_from"], m["valid_to"], m["superseded_by"]) for m in memories]


async def test_memories_now_before_and_valid_then(story: Story, tmp_path: Path) -> None:
    u, lisbon, berlin = story.user, story.lisbon, story.berlin
    berlin_from = BERLIN_SAID.isoformat().replace("+00:00", "Z")
    now = await cli(story, tmp_path, "memories", "--user", u, "--json")
    assert brief(now) == [("User lives in Berlin", "current", berlin_from, None, None)]
    assert (now[0]["slot"], now[0]["value"], now[0]["polarity"]) == ("residence", "Berlin", "holds")

    before = await cli(
        story, tmp_path, "memories", "--user", u, "--as-of", story.between.isoformat(), "--json"
    )
    assert brief(before) == [("User lives in Lisbon", "current", "2024-05-01T00:00:00Z", None, None)]

    then = await cli(story, tmp_path, "memories", "--user", u, "--valid-at", "2024-06-01", "--json")
    assert brief(then) == [
        ("User lives in Lisbon", "superseded", "2024-05-01T00:00:00Z", berlin_from, berlin)
    ]
    assert [m["memory_id"] for m in then] == [lisbon]

    every = await cli(story, tmp_path, "memories", "--user", u, "--all", "--json")
    assert [(m["memory_id"], m["status"]) for m in every] == [(lisbon, "superseded"), (berlin, "current")]
    # Both times: as memsaga knew it before Berlin, Lisbon was true in June 2024 and still open.
    both = await cli(story, tmp_path, "memories", "--user", u, "--as-of", story.between.isoformat(),
                     "--valid-at", "2026-01-01T00:00:00Z", "--json")  # fmt: skip
    assert brief(both) == [("User lives in Lisbon", "current", "2024-05-01T00:00:00Z", None, None)]

    table = await cli(story, tmp_path, "memories", "--user", u, "--all")
    assert "superseded" in table and berlin in table and "2024-05-01" in table, table


async def test_history_tells_where_each_event_came_from(story: Story, tmp_path: Path) -> None:
    history = await cli(story, tmp_path, "history", story.lisbon, "--json")
    assert (history["format"], history["status"], history["superseded_by"]) == (
        "memsaga.history/v1", "superseded", story.berlin,
    )  # fmt: skip
    created_, superseded = history["events"]
    assert (created_["event_type"], created_["version"], created_["text"]) == (
        "MemoryCreated",
        1,
        "User lives in Lisbon",
    )
    assert created_["episode"]["excerpt"] == "I moved to Lisbon in May 2024."
    assert (created_["episode"]["reviewer"], created_["episode"]["review"]) == ("ana", "approved")
    assert created_["workflow_url"] == f"{UI}/namespaces/default/workflows/extract-lisbon-u-1/run-1"
    assert superseded["event_type"] == "MemorySuperseded" and superseded["successor_id"] == story.berlin
    assert (
        superseded["episode"]["excerpt"] == "Actually, I moved from Lisbon to Berlin."
    )  # from the blob store
    assert superseded["episode"]["text"] == "blob" and superseded["episode"]["reviewer"] is None
    assert created_["recorded_at"] < superseded["recorded_at"]

    successor = await cli(story, tmp_path, "history", story.berlin, "--json")
    assert [s["memory_id"] for s in successor["events"][0]["supersedes"]] == [story.lisbon]
    assert [s["memory_id"] for s in successor["supersedes"]] == [story.lisbon]

    text = await cli(story, tmp_path, "history", story.lisbon)
    assert "superseded by mem-berlin-u-1" in text and "review: approved by ana" in text


async def test_a_retracted_memory_leaves_the_listings_and_history_says_why(
    story: Story, tmp_path: Path
) -> None:
    user = "u-retract"
    lisbon, berlin, between, _, _ = await write_story(story.store, story.pool, user)
    [created_event] = await story.store.read_stream(ev.memory_stream(berlin), limit=1)
    await memory_event(story.store, berlin, ev.MemoryRetracted(
        memory_id=berlin, user_id=user, compensates_event_id=str(created_event.event_id),
        reason="the user asked", retracted_by="u-retract",
    ), user=user, workflow_id="retract-1", at=BERLIN_SAID)  # fmt: skip
    await rebuild(story.pool, story.store, MEMORIES)

    assert await query_memories(story.pool, user, statuses=["current", "superseded", "invalidated"]) != []
    assert all(
        m.memory_id != berlin
        for m in await query_memories(story.pool, user, statuses=None, as_of=datetime.now(UTC))
    )
    every = await cli(story, tmp_path, "memories", "--user", user, "--all", "--json")
    assert [m["memory_id"] for m in every] == [lisbon]  # Berlin is gone; Lisbon stays superseded
    history = await memory_history(story.store, berlin)
    assert history.status == "retracted"
    assert (history.events[-1].reason, history.events[-1].retracted_by) == ("the user asked", "u-retract")
    assert history.events[-1].compensates == "MemoryCreated (version 1)"
    assert between


async def test_bad_input_is_one_clear_error(story: Story, tmp_path: Path) -> None:
    unknown = await cli(story, tmp_path, "history", "no-such-memory", code=5)  # not found
    assert "no memory 'no-such-memory'" in unknown
    # With --json the error is JSON on stdout (json_mode reads the real argv: a process of its own).
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "memsaga", "history", "no-such-memory", "--json",
        env={**os.environ, "MEMSAGA_DATABASE_URL": story.dsn, "MEMSAGA_STATE_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 5 and b"Traceback" not in err
    assert (json.loads(out)["error"], json.loads(out)["exit_code"]) == ("MemoryNotFound", 5)
    naive = await cli(story, tmp_path, "memories", "--user", "u-1", "--valid-at", "2024-06-01T00:00", code=2)
    assert "has no time zone" in naive
    garbled = await cli(story, tmp_path, "memories", "--user", "u-1", "--as-of", "yesterday", code=2)
    assert "is not an ISO time" in garbled
    retracted = await cli(story, tmp_path, "memories", "--user", "u-1", "--status", "retracted", code=2)
    assert "leave every read model" in retracted


async def test_a_compensated_saga_leaves_the_memories_as_before(story: Story, tmp_path: Path) -> None:
    """The Berlin saga is rejected after its store step: it reinstates Lisbon and retracts Berlin."""
    user = "u-rejected"
    lisbon, berlin, between, _, _ = await write_story(story.store, story.pool, user)
    superseded = [
        e
        for e in await story.store.read_stream(ev.memory_stream(lisbon))
        if e.event_type == "MemorySuperseded"
    ]
    [created_event] = await story.store.read_stream(ev.memory_stream(berlin), limit=1)
    workflow = f"extract-berlin-{user}"
    await memory_event(story.store, lisbon, ev.MemoryReinstated(
        memory_id=lisbon, user_id=user, compensates_event_id=str(superseded[0].event_id), reason="rejected",
    ), user=user, workflow_id=workflow, at=BERLIN_SAID)  # fmt: skip
    await memory_event(story.store, berlin, ev.MemoryRetracted(
        memory_id=berlin, user_id=user, compensates_event_id=str(created_event.event_id), reason="rejected",
    ), user=user, workflow_id=workflow, at=BERLIN_SAID)  # fmt: skip
    await rebuild(story.pool, story.store, MEMORIES)
    before = await query_memories(story.pool, user, as_of=between, statuses=["current", "superseded"])

    now = await cli(story, tmp_path, "memories", "--user", user, "--all", "--json")
    assert [(m["memory_id"], m["status"], m["valid_to"]) for m in now] == [(lisbon, "current", None)]
    assert [
        (m.memory_id, m.status)
        for m in await query_memories(story.pool, user, statuses=["current", "superseded"])
    ] == [(m.memory_id, m.status) for m in before]
    history = await cli(story, tmp_path, "history", berlin, "--json")
    assert history["status"] == "retracted"
    assert [(s["memory_id"], s["undone"]) for s in history["supersedes"]] == [(lisbon, True)]
    reinstated = (await cli(story, tmp_path, "history", lisbon, "--json"))["events"][-1]
    assert (reinstated["event_type"], reinstated["compensates"]) == (
        "MemoryReinstated",
        "MemorySuperseded (version 2)",
    )
