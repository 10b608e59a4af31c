"""``memsaga verify`` on a real deployment: clean after relay and runners caught up; a changed
read-model row, a message lost from JetStream and a parked event are each found; the live
tables and checkpoints are left as they were, and no scratch schema is left behind."""

from __future__ import annotations

import pytest

from memsaga.devstack.ports import LOCALHOST, free_port
from memsaga.settings import Settings
from memsaga.verify import Limits, verify
from projections import EXTRACTIONS, MEMORIES
from projections.parked import park
from tests.projections.conftest import Env, applied, background, relay_position, snapshot, wait_until
from tests.projections.histories import append_all, make_history

pytestmark = pytest.mark.services

# memory_search needs the vectors' blobs, which these synthetic histories do not store.
CHECKED = {p.name: p for p in (MEMORIES, EXTRACTIONS)}


def settings_for(env: Env, nats_url: str) -> Settings:
    return Settings(
        database_url=env.dsn,
        nats_url=nats_url,
        nats_stream=env.stream,
        subject_prefix=env.prefix,
        temporal_address=f"{LOCALHOST}:{free_port()}",  # no Temporal: the read model's view only
    )


async def caught_up(env: Env) -> None:
    history = make_history(seed=515, sagas=12)
    await append_all(env.store, history)
    head = await env.store.head_position()
    async with background() as bg:
        bg.start(env.relay().run)
        for projection in CHECKED.values():
            bg.start(env.runner(projection).run)

        async def done() -> bool:
            if await relay_position(env.pool, env.stream) < head:
                return False
            for projection in CHECKED.values():
                if await applied(env.pool, projection.name) < history.count(projection.event_types):
                    return False
            return True

        await wait_until(done, timeout=90, what="relay and runners to catch up", bg=bg)


async def test_verify_passes_then_finds_each_broken_invariant(env: Env, nats_url: str) -> None:
    await caught_up(env)
    settings = settings_for(env, nats_url)
    before = await snapshot(env.pool, MEMORIES)
    checkpoints = await env.pool.fetch("SELECT * FROM memsaga.projection_versions ORDER BY name, version")

    report = await verify(settings, projections=CHECKED)
    assert report.ok, report.violations
    assert report.stream is not None and report.stream.missing == 0
    assert report.stream.checked == await env.store.head_position()
    assert {r.projection: r.equal for r in report.read_models} == {"memories": True, "extractions": True}
    assert all(d.live_rows > 0 for r in report.read_models for d in r.tables if d.table != "memory_lifecycle")
    assert report.sagas is not None and report.sagas.temporal is not None  # unreachable, said so

    # Nothing disturbed: same rows, same checkpoints, no scratch schema left.
    assert await snapshot(env.pool, MEMORIES) == before
    after = await env.pool.fetch("SELECT * FROM memsaga.projection_versions ORDER BY name, version")
    assert [dict(r) for r in after] == [dict(r) for r in checkpoints]
    left = await env.pool.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'memsaga_verify_%'")
    assert left == 0

    # A live row changed behind the handlers' back; a message gone from JetStream; an event parked.
    await env.pool.execute(
        """UPDATE memsaga_read.memories SET text = 'tampered' WHERE memory_id =
           (SELECT min(memory_id) FROM memsaga_read.memories WHERE status = 'current')"""
    )
    info = await env.js.stream_info(env.stream)
    await env.js.delete_msg(env.stream, 3)
    assert info.state.messages >= 3
    first = await env.pool.fetchval("SELECT stream_id FROM memsaga.events ORDER BY position LIMIT 1")
    event = (await env.store.read_stream(first))[0]
    async with env.pool.acquire() as conn:
        await park(conn, EXTRACTIONS.name, 1, event.event_id, event, "Boom: test", 5)

    report = await verify(settings, projections=CHECKED, limits=Limits())
    assert not report.ok
    kinds = {(v.kind, v.subject) for v in report.violations}
    assert ("read_model_differs", "memories") in kinds
    assert ("parked", "extractions") in kinds
    missing = [v for v in report.violations if v.kind == "missing_in_stream"]
    assert len(missing) == 1 and missing[0].fix is not None
    assert missing[0].fix.startswith("memsaga relay --from-position ")
    assert ("read_model_differs", "extractions") not in kinds


async def test_a_fresh_deployment_verifies_clean(env: Env, nats_url: str) -> None:
    report = await verify(settings_for(env, nats_url), projections=CHECKED)  # no stream, nothing built
    assert report.ok, report.violations
    assert report.stream is not None and report.stream.messages == 0
    assert [r.version for r in report.read_models] == [None, None]
