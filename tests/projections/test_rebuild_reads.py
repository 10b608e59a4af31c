"""How a rebuild reads and commits (issue 19): only the events its projection handles are decoded,
a transaction holds at least a batch of them (or a bounded number of reads), reads run ahead of
the applying, and a failed read fails the build, which resumes from its checkpoint."""

from __future__ import annotations

import importlib
from typing import Any

import asyncpg
import pytest

from eventstore.postgres import EventTail
from projections import MEMORIES, rebuild
from projections.rebuild import MAX_READS_PER_TRANSACTION
from tests.projections.conftest import Env, snapshot
from tests.projections.histories import append_all, make_history

BATCH = 10
rebuild_module = importlib.import_module("projections.rebuild")  # the module, not the function


async def test_a_rebuild_decodes_only_the_events_its_projection_handles(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(seed=61, sagas=12)
    await append_all(env.store, history)
    reference = await rebuild(env.pool, env.store, MEMORIES)  # read as it comes, batches of 500
    decoded: list[str] = []
    decode = EventTail.decode

    def watched(tail: EventTail, rows: list[asyncpg.Record]) -> Any:
        decoded.extend(r["event_type"] for r in rows)
        return decode(tail, rows)

    monkeypatch.setattr(EventTail, "decode", watched)
    result = await rebuild(env.pool, env.store, MEMORIES, batch_size=BATCH)

    assert set(decoded) <= set(MEMORIES.event_types)
    assert len(decoded) == history.count(MEMORIES.event_types) == result.applied
    assert history.count() > 2 * len(decoded)  # most of the store was skipped undecoded
    assert result.position == reference.position == await env.store.head_position()
    assert await snapshot(env.pool, MEMORIES, result.version) == await snapshot(
        env.pool, MEMORIES, reference.version
    )


async def test_a_rebuild_commits_a_batch_of_handled_events_or_a_bounded_number_of_reads(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(seed=62, sagas=12)
    await append_all(env.store, history)
    commits: list[tuple[int, int]] = []  # (position, events applied) of each transaction
    advance = rebuild_module.advance_checkpoint

    async def watched(conn: Any, name: str, version: int, position: int, applied: int) -> None:
        commits.append((position, applied))
        await advance(conn, name, version, position, applied)

    monkeypatch.setattr(rebuild_module, "advance_checkpoint", watched)
    result = await rebuild(env.pool, env.store, MEMORIES, batch_size=BATCH)

    head = await env.store.head_position()
    positions = [p for p, _ in commits]
    assert positions == sorted(set(positions)) and positions[-1] == head == result.position
    assert sum(a for _, a in commits) == history.count(MEMORIES.event_types) == result.applied
    before = 0
    for position, applied in commits[:-1]:  # positions here are 1..head, so rows = the difference
        assert applied >= BATCH or position - before == MAX_READS_PER_TRANSACTION * BATCH
        before = position
    assert len(commits) < head / BATCH  # fewer transactions than reads


async def test_a_failed_read_fails_the_build_which_resumes_from_its_checkpoint(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(seed=63, sagas=12)
    await append_all(env.store, history)
    reference = await rebuild(env.pool, env.store, MEMORIES)
    fetch, reads = EventTail.fetch, [0]

    async def failing(tail: EventTail, limit: int = 1000) -> list[asyncpg.Record]:
        reads[0] += 1
        if reads[0] == 12:
            raise ConnectionResetError("PostgreSQL went away")
        return await fetch(tail, limit)

    monkeypatch.setattr(EventTail, "fetch", failing)
    with pytest.raises(ConnectionResetError):
        await rebuild(env.pool, env.store, MEMORIES, batch_size=BATCH)
    building = await env.pool.fetchrow(
        "SELECT version, position FROM memsaga.projection_versions"
        " WHERE name = 'memories' AND state = 'building'"
    )
    assert building is not None and 0 < building["position"] < 11 * BATCH  # committed before the failed read

    resumed = await rebuild(env.pool, env.store, MEMORIES, batch_size=BATCH)
    assert resumed.version == building["version"]
    assert resumed.applied == history.count(MEMORIES.event_types)  # each event once, across the resume
    assert await snapshot(env.pool, MEMORIES, resumed.version) == await snapshot(
        env.pool, MEMORIES, reference.version
    )
