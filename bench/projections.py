"""Benchmark 4: the ``memories`` projection, rebuilt from the store and caught up from JetStream.

* rebuild: ``projections.rebuild(pool, store, MEMORIES)`` over the whole data set (a new
  read-model version, built while the store is otherwise idle); events read per second
  and seconds in all. Baseline: plain asyncpg reading the same rows 500 at a time and
  upserting the ``MemoryCreated`` ones into a plain table with the same columns (one
  transaction per batch, ``executemany``), without applied-event tracking or savepoints.
* catch-up: new events (``catchup_events``) appended after the read model, relayed into a
  new stream; then a ``ProjectionRunner`` applies them from its durable consumer; memory
  events applied per second. Baseline: a plain nats-py pull consumer on the same stream
  and subjects, decoding each message and upserting its row the plain way, then acking.
* catch-up with runners: the same events applied by 1, 2 and 4 runner *processes*
  (``bench/catchup_runner.py``, as ``memsaga project`` runs them) sharing a version with
  :data:`PARTITIONS` partitions by lease; events applied per second, from the moment the
  registered runners are told to start until the partitions' checkpoints count every event.
  Each side applies into a fresh, empty read-model version (so does the in-process runner
  above), with fresh consumers on the round's stream.

Peak memory (PSS) of the bench process, PostgreSQL and NATS is sampled for every side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import asyncpg
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.context import BenchContext
from bench.dataset import fill_store
from bench.harness import Deliveries, Side, Stopwatch, interleaved, merge_peaks, rate
from bench.relay import drop_stream
from bench.results_model import Figure, Measurement, Target
from eventstore import PostgresEventStore
from projections import MEMORIES, ProjectionRunner, Relay, RelayConfig, RunnerConfig, connect_nats, rebuild
from projections.subjects import type_filters
from projections.versions import activate, active_checkpoint, create_version, latest_version

BATCH = 500
PARTITIONS = 4
RUNNERS = (1, 2, 4)
_ROWS = """SELECT position, event_type, event_id, version, correlation_id, occurred_at,
    payload::text AS payload FROM memsaga.events WHERE position > $1 ORDER BY position LIMIT $2"""
_UPSERT = """INSERT INTO {table} AS m (memory_id, user_id, text, kind, content_hash, episode_id, source,
        sensitive, vector_sha256, version, correlation_id, created_event_id, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (memory_id) DO UPDATE SET text = EXCLUDED.text,
        version = greatest(m.version, EXCLUDED.version)"""


def _row(
    payload: dict[str, object], version: int, correlation_id: str, event_id: object, at: object
) -> tuple[object, ...]:
    p = payload
    return (
        p["memory_id"], p["user_id"], p["text"], p["kind"], p["content_hash"], p["episode_id"], p["source"],
        p.get("sensitive", False), p.get("vector_sha256"), version, correlation_id, event_id, at,
    )  # fmt: skip


async def _plain_table(pool: asyncpg.Pool, name: str) -> str:
    table = f"bench_read.{name}"
    await pool.execute("CREATE SCHEMA IF NOT EXISTS bench_read")
    ddl = MEMORIES.ddl.replace("{memories}", table).replace("{memory_lifecycle}", f"{table}_lifecycle")
    await pool.execute(ddl)
    return table


async def rebuild_plain(pool: asyncpg.Pool, table: str) -> int:
    """Read every event 500 at a time and upsert the memories plainly; events read."""
    sql = _UPSERT.format(table=table)
    count, position = 0, 0
    while rows := await pool.fetch(_ROWS, position, BATCH):
        memories = [
            _row(json.loads(r["payload"]), r["version"], r["correlation_id"], r["event_id"], r["occurred_at"])
            for r in rows
            if r["event_type"] == "MemoryCreated"
        ]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(sql, memories)
        count += len(rows)
        position = rows[-1]["position"]
    return count


async def catch_up_plain(
    pool: asyncpg.Pool, js: JetStreamContext, stream: str, prefix: str, table: str, expected: int
) -> None:
    """Consume the memory events of ``stream`` with a plain pull consumer until ``expected`` applied."""
    durable = "bench-plain"
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=[f for t in MEMORIES.event_types for f in type_filters(t, prefix)],
        ),
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    sql = _UPSERT.format(table=table)
    applied = 0
    while applied < expected:
        try:
            msgs = await sub.fetch(100, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        bodies = [json.loads(m.data) for m in msgs]
        rows = [
            _row(
                b["payload"],
                b["version"],
                b["correlation_id"],
                uuid.UUID(b["event_id"]),
                datetime.fromisoformat(b["occurred_at"]),
            )
            for b in bodies
            if b["event_type"] == "MemoryCreated"
        ]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(sql, rows)
        for m in msgs:
            await m.ack()
        applied += len(rows)  # counted by type: a NATS before 2.10 ignores the subject filters
    await sub.unsubscribe()


async def catch_up_memsaga(runner: ProjectionRunner, expected: int) -> None:
    """Run ``runner`` until it has applied ``expected`` events."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        while runner.stats.applied < expected:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"the runner stopped after {runner.stats.applied} of {expected} events")
            await asyncio.sleep(0.005)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _relayed_batch(
    ctx: BenchContext,
    store: PostgresEventStore,
    js: JetStreamContext,
    first_saga: int,
    deliveries: Deliveries,
) -> tuple[RelayConfig, int, int]:
    """Append ``catchup_events`` new events and relay only them into a new stream (checked in ``deliveries``).

    Returns (the stream's config, the next saga number, how many memory events the batch holds).
    """
    before = await store.head_position()
    next_saga = await fill_store(store.pool, ctx.sizes.catchup_events, first_saga=first_saga)
    stream, prefix = ctx.unique_stream("catchup")
    await store.pool.execute(
        "INSERT INTO memsaga.relay_checkpoints (stream, position) VALUES ($1, $2)", stream, before
    )
    head = await store.head_position()
    config = RelayConfig(stream=stream, subject_prefix=prefix)
    try:
        await Relay(store, js, config).run(to_position=head)
        committed = int(
            await store.pool.fetchval("SELECT count(*) FROM memsaga.events WHERE position > $1", before)
        )
        deliveries.record((await js.stream_info(stream)).state.messages, committed)
    except BaseException:
        await drop_stream(js, stream)
        raise
    return config, next_saga, await _count_of_types(store, before, MEMORIES.event_types)


async def _count_of_types(store: PostgresEventStore, after: int, event_types: Iterable[str]) -> int:
    """Committed events of ``event_types`` after position ``after``."""
    value = await store.pool.fetchval(
        "SELECT count(*) FROM memsaga.events WHERE position > $1 AND event_type = ANY($2::text[])",
        after,
        list(event_types),
    )
    return int(value)


async def fresh_version(pool: asyncpg.Pool, partitions: int) -> int:
    """Activate a new, empty version of ``memories`` with ``partitions`` partitions (bench only:
    it skips the build, so it holds just what runners apply from now on)."""
    async with pool.acquire() as conn, conn.transaction():
        version = await latest_version(conn, MEMORIES.name) + 1
        await create_version(conn, MEMORIES, version, partitions)
        await activate(conn, MEMORIES, version)
    return version


async def _drop_consumers(js: JetStreamContext, stream: str, partitions: int) -> None:
    for partition in range(partitions):
        with contextlib.suppress(nats.errors.Error):
            await js.delete_consumer(stream, MEMORIES.partition_durable(partition, partitions))


async def catch_up_processes(
    ctx: BenchContext,
    store: PostgresEventStore,
    dsn: str,
    js: JetStreamContext,
    relayed: RelayConfig,
    runners: int,
    expected: int,
) -> float:
    """Seconds ``runners`` runner processes take to apply ``expected`` events of the round's stream."""
    await fresh_version(store.pool, PARTITIONS)
    await _drop_consumers(js, relayed.stream, PARTITIONS)
    args = [dsn, ctx.settings.require_nats_url(), relayed.stream, relayed.subject_prefix]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.catchup_runner", *args, str(PARTITIONS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(runners)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 120)
            if line.strip() != b"ready":
                raise RuntimeError(f"a catch-up runner did not start: {line!r}")
        started = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        deadline = started + 600
        while (cp := await active_checkpoint(store.pool, MEMORIES.name)) is None or cp.applied < expected:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{runners} runner(s) stopped or stalled before {expected} events")
            await asyncio.sleep(0.01)
        return time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def run(ctx: BenchContext) -> list[Figure]:
    """Rebuild (``rebuild_rounds``), then catch up (``catchup_rounds``), each beside its baseline."""
    data = await ctx.dataset()
    async with ctx.store(data.dsn) as store:
        rebuild_figures = await _rebuilds(ctx, store)
        nc = await connect_nats(ctx.settings.require_nats_url(), name="memsaga-bench")
        try:
            catch_up = await _catch_ups(ctx, store, data.dsn, nc.jetstream(), data.next_saga)
        finally:
            await nc.close()
    return [*rebuild_figures, *catch_up]


async def _rebuilds(ctx: BenchContext, store: PostgresEventStore) -> list[Figure]:
    rounds = ctx.sizes.rebuild_rounds
    events = await store.head_position()
    peaks: dict[str, dict[str, float]] = {"memsaga": {}, "asyncpg": {}}
    seconds: dict[str, list[float]] = {"memsaga": [], "asyncpg": []}
    handled = await _count_of_types(store, 0, MEMORIES.event_types)
    deliveries = Deliveries()

    async def memsaga(_: int) -> float:
        with ctx.sampler.running() as sampler:
            result = await rebuild(store.pool, store, MEMORIES, batch_size=BATCH)
        merge_peaks(peaks["memsaga"], sampler.peaks)
        deliveries.record(result.applied, handled)  # a new version each round: applied from 0
        seconds["memsaga"].append(result.seconds)
        return rate(events, result.seconds)

    async def baseline(r: int) -> float:
        table = await _plain_table(store.pool, f"memories_rebuild_{r}")
        with ctx.sampler.running() as sampler, Stopwatch() as sw:
            read = await rebuild_plain(store.pool, table)
        merge_peaks(peaks["asyncpg"], sampler.peaks)
        seconds["asyncpg"].append(sw.seconds)
        return rate(read, sw.seconds)

    ctx.progress.start(f"projection rebuild ({events:,} events)", rounds * 2)
    samples = await interleaved(rounds, {"memsaga": memsaga, "asyncpg": baseline}, ctx.progress.advance)
    size = f"{events:,} events (a quarter of them MemoryCreated) per round"
    return [
        Figure.compare(
            "projections.rebuild",
            benchmark="projections",
            title="rebuild of memories: events read/s vs plain asyncpg upserts",
            unit="events/s",
            subject=Measurement.of("memsaga rebuild", samples["memsaga"], peaks["memsaga"]),
            baseline=Measurement.of("asyncpg read + upsert", samples["asyncpg"], peaks["asyncpg"]),
            size=size,
            delivered=deliveries.worst,
        ),
        Figure.compare(
            "projections.rebuild.seconds",
            benchmark="projections",
            title="rebuild of memories: seconds in all",
            unit="s",
            higher_is_better=False,
            subject=Measurement.of("memsaga rebuild", seconds["memsaga"], peaks["memsaga"]),
            baseline=Measurement.of("asyncpg read + upsert", seconds["asyncpg"], peaks["asyncpg"]),
            target=Target(
                kind="value_below",
                threshold=60.0,
                text="1,000,000 events in < 60 s",
                applies=events == 1_000_000,
            ),
            size=size,
            delivered=deliveries.worst,
        ),
    ]


async def _catch_ups(
    ctx: BenchContext, store: PostgresEventStore, dsn: str, js: JetStreamContext, next_saga: int
) -> list[Figure]:
    rounds = ctx.sizes.catchup_rounds
    peaks: dict[str, dict[str, float]] = {
        name: {} for name in ("memsaga", "nats", *(f"runners-{n}" for n in RUNNERS))
    }
    samples: dict[str, list[float]] = {
        name: [] for name in ("memsaga", "nats", *(f"runners-{n}" for n in RUNNERS))
    }
    sides_per_round = 2 + len(RUNNERS)
    ctx.progress.start(f"projection catch-up ({ctx.sizes.catchup_events:,} events)", rounds * sides_per_round)
    memories = 0
    deliveries = Deliveries()  # of the relay that fills each round's stream
    for r in range(rounds):
        relayed, next_saga, memories = await _relayed_batch(ctx, store, js, next_saga, deliveries)
        table = await _plain_table(store.pool, f"memories_catchup_{r}")
        sides = {
            "memsaga": _catch_up_side(ctx, peaks["memsaga"], memories, _runner_catch_up(store, js, relayed)),
            "nats": _catch_up_side(ctx, peaks["nats"], memories, _plain_catch_up(store, js, relayed, table)),
        } | {
            f"runners-{n}": _processes_side(ctx, store, dsn, js, relayed, n, memories, peaks[f"runners-{n}"])
            for n in RUNNERS
        }
        # One round of each per batch of new events; who goes first alternates.
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        try:
            for name in order:
                samples[name].append(await sides[name](r))
                ctx.progress.advance()
        finally:
            await drop_stream(js, relayed.stream)
    size = f"{memories:,} memory events (of {ctx.sizes.catchup_events:,} appended) per round"
    plain = Measurement.of("nats-py pull + asyncpg upsert", samples["nats"], peaks["nats"])
    one = Measurement.of(
        f"1 runner process, {PARTITIONS} partitions", samples["runners-1"], peaks["runners-1"]
    )
    figures = [
        Figure.compare(
            "projections.catch_up",
            benchmark="projections",
            title="catch-up of memories from JetStream: events applied/s vs plain pull consumer",
            unit="events/s",
            subject=Measurement.of("memsaga ProjectionRunner", samples["memsaga"], peaks["memsaga"]),
            baseline=plain,
            target=Target(kind="ratio_at_least", threshold=0.7, text="one runner >= 0.7x plain"),
            size=size,
            delivered=deliveries.worst,
        ),
        Figure.compare(
            "projections.catch_up.partitioned",
            benchmark="projections",
            title=f"catch-up, one runner process with {PARTITIONS} partitions vs plain pull consumer",
            unit="events/s",
            subject=one,
            baseline=plain,
            target=Target(kind="ratio_at_least", threshold=0.7, text="one runner >= 0.7x plain"),
            size=size,
            delivered=deliveries.worst,
        ),
    ]
    for n in RUNNERS[1:]:
        figures.append(
            Figure.compare(
                f"projections.catch_up.runners_{n}",
                benchmark="projections",
                title=f"catch-up with {n} runner processes vs 1 ({PARTITIONS} partitions, shared by lease)",
                unit="events/s",
                subject=Measurement.of(
                    f"{n} runner processes", samples[f"runners-{n}"], peaks[f"runners-{n}"]
                ),
                baseline=one,
                target=Target(kind="ratio_at_least", threshold=1.3, text="2 runners >= 1.3x one")
                if n == 2
                else None,
                size=size,
                delivered=deliveries.worst,
            )
        )
    return figures


CatchUp = Callable[[int], Awaitable[None]]


def _runner_catch_up(store: PostgresEventStore, js: JetStreamContext, relayed: RelayConfig) -> CatchUp:
    async def catch_up(expected: int) -> None:
        await fresh_version(store.pool, 1)
        config = RunnerConfig(stream=relayed.stream, subject_prefix=relayed.subject_prefix, partitions=1)
        await catch_up_memsaga(ProjectionRunner(MEMORIES, store, js, config), expected)

    return catch_up


def _plain_catch_up(
    store: PostgresEventStore, js: JetStreamContext, relayed: RelayConfig, table: str
) -> CatchUp:
    async def catch_up(expected: int) -> None:
        await catch_up_plain(store.pool, js, relayed.stream, relayed.subject_prefix, table, expected)

    return catch_up


def _processes_side(
    ctx: BenchContext,
    store: PostgresEventStore,
    dsn: str,
    js: JetStreamContext,
    relayed: RelayConfig,
    runners: int,
    expected: int,
    peaks: dict[str, float],
) -> Side:
    async def side(_: int) -> float:
        with ctx.sampler.running() as sampler:
            seconds = await catch_up_processes(ctx, store, dsn, js, relayed, runners, expected)
        merge_peaks(peaks, sampler.peaks)  # the bench process, PostgreSQL and NATS (not the runners)
        return rate(expected, seconds)

    return side


def _catch_up_side(ctx: BenchContext, peaks: dict[str, float], expected: int, catch_up: CatchUp) -> Side:
    async def side(_: int) -> float:
        with ctx.sampler.running() as sampler, Stopwatch() as sw:
            await catch_up(expected)
        merge_peaks(peaks, sampler.peaks)
        return rate(expected, sw.seconds)

    return side
