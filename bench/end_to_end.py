"""Benchmark 6: end to end, from ``append`` to visible in the ``memories`` read model.

``MemoryCreated`` events are appended open-loop at a steady ``e2e_rate`` per second (each
on its own new stream; a slow append never delays the next). The relay (woken by NOTIFY)
and a ``ProjectionRunner`` run in this process, as ``memsaga relay`` and ``memsaga
project run`` would. A row trigger on the active read-model table sends a notification
when a memory's row commits, so "visible" is measured at commit, without polling; the
latency of an event is that moment minus the moment its ``append`` was called. The first
second is warm-up and is left out.

Stages (diagnosis): each memsaga event is also timed where it passes each step, by wrapping the
relay's read and checkpoint (called once it finds a batch acked) and the runner's ``run_batch``
on those objects (nothing in their code changes): append returned (committed) → the relay's read
returned it (woken by the doorbell's NOTIFY, or its poll) → the relay found every ack of its batch
in (JetStream acknowledged it; later batches may be in flight) → the runner's fetch handed it over →
the runner's batch committed and was acked → the visibility trigger's NOTIFY arrived. The
figure's notes hold each stage's p50 / p99 and, for the events at or above the p99, the share
of their latency each stage took.

Baseline: the shortest path PostgreSQL alone offers: the same rows inserted into a plain
events table with a NOTIFY trigger, and a LISTEN-ing consumer copying new rows into a plain
read table (no broker, no tracking, no gap safety).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from bench.context import BenchContext
from bench.dataset import append_event, baseline_row
from bench.harness import percentile
from bench.relay import drop_stream
from bench.results_model import Figure, Measurement, Target
from eventstore import NO_STREAM, EventTail, PostgresEventStore, RecordedEvent
from projections import (
    MEMORIES,
    ProjectionRunner,
    Relay,
    RelayConfig,
    RunnerConfig,
    connect_nats,
    ensure_built,
)
from projections.relay_window import InFlight
from projections.subjects import STREAM_ID

WARM_UP = 1.0
TARGET_RATE = 1000.0  # events/s the p99 target is stated for (issue 19)
SETTLE_TIMEOUT = 30.0
_VISIBLE_TRIGGER = """
CREATE FUNCTION bench_visible() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify(TG_ARGV[0], NEW.memory_id); RETURN NULL; END $$;
CREATE TRIGGER bench_visible AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION bench_visible('{channel}');
"""
_PLAIN_DDL = """
CREATE SCHEMA plain;
CREATE TABLE plain.events (LIKE memsaga.events INCLUDING ALL);
ALTER TABLE plain.events ALTER COLUMN position DROP DEFAULT;
ALTER TABLE plain.events ADD COLUMN memory_id text GENERATED ALWAYS AS (payload->>'memory_id') STORED;
CREATE SEQUENCE plain.events_position_seq OWNED BY plain.events.position;
ALTER TABLE plain.events ALTER COLUMN position SET DEFAULT nextval('plain.events_position_seq');
CREATE FUNCTION plain.appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('plain_appended', ''); RETURN NULL; END $$;
CREATE TRIGGER appended AFTER INSERT ON plain.events FOR EACH STATEMENT EXECUTE FUNCTION plain.appended();
"""
_PLAIN_INSERT = """INSERT INTO plain.events (event_id, stream_id, version, event_type, event_version,
    correlation_id, causation_id, user_id, occurred_at, payload, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb)"""
_PLAIN_PROJECT = """INSERT INTO plain.memories (memory_id, user_id, text, kind, content_hash, episode_id,
        source, sensitive, vector_sha256, version, correlation_id, created_event_id, created_at)
    SELECT p->>'memory_id', p->>'user_id', p->>'text', p->>'kind', p->>'content_hash', p->>'episode_id',
           p->>'source', (p->>'sensitive')::boolean, p->>'vector_sha256', e.version, e.correlation_id,
           e.event_id, e.occurred_at
    FROM plain.events e, LATERAL (SELECT e.payload) AS x(p)
    WHERE e.position > $1 ON CONFLICT (memory_id) DO NOTHING"""


class Visibility:
    """Append times and visible times by memory id, fed by a LISTEN connection."""

    def __init__(self) -> None:
        self.appended: dict[str, float] = {}
        self.visible: dict[str, float] = {}
        self.all_visible = asyncio.Event()
        self.expected = -1

    def on_visible(self, _conn: object, _pid: int, _channel: str, memory_id: object) -> None:
        """asyncpg listener callback."""
        self.visible.setdefault(str(memory_id), time.perf_counter())
        if len(self.visible) == self.expected:
            self.all_visible.set()

    def latencies_ms(self, warm_up_until: float) -> list[float]:
        """Latency of every event appended after the warm-up."""
        return list(self.latency_by_id(warm_up_until).values())

    def latency_by_id(self, warm_up_until: float) -> dict[str, float]:
        """Latency (ms) of every event appended after the warm-up, by memory id."""
        return {
            m: (self.visible[m] - t) * 1000
            for m, t in self.appended.items()
            if t >= warm_up_until and m in self.visible
        }


STAGES = ("append", "relay read", "publish", "runner fetch", "apply+commit", "notify")
"""What each step adds, in order; see the module docstring."""
_MARKS = ("appended", "read", "published", "fetched", "applied")


class StageClock:
    """When each memory (by id) passed each step of memsaga's path."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[str, float]] = {m: {} for m in _MARKS}

    def mark(self, step: str, memory_ids: list[str]) -> None:
        now = time.perf_counter()
        seen = self.marks[step]
        for memory_id in memory_ids:
            seen.setdefault(memory_id, now)

    def watch(self, relay: Relay, runner: ProjectionRunner) -> None:
        """Wrap the relay's read and checkpoint and the runner's batch on these instances."""
        read, checkpoint, run_batch = relay._read, relay._checkpoint, runner.run_batch

        async def timed_read(tail: EventTail, to_position: int | None) -> list[RecordedEvent]:
            batch = await read(tail, to_position)
            self.mark("read", [_memory_id(e.stream_id) for e in batch])
            return batch

        async def timed_checkpoint(acked: list[InFlight]) -> None:
            # Called as soon as the relay finds these batches acked in full, before it commits.
            self.mark("published", [_memory_id(e.stream_id) for batch in acked for e in batch.events])
            await checkpoint(acked)

        async def timed_batch(msgs: list[Any], partition: int | None = None) -> None:
            ids = [_memory_id((m.headers or {}).get(STREAM_ID, "")) for m in msgs]
            self.mark("fetched", ids)
            await run_batch(msgs, partition)
            self.mark("applied", ids)

        relay._read = timed_read  # type: ignore[method-assign]
        relay._checkpoint = timed_checkpoint  # type: ignore[method-assign]
        runner.run_batch = timed_batch  # type: ignore[method-assign]

    def stages_ms(self, seen: Visibility, warm_up_until: float) -> dict[str, dict[str, float]]:
        """Per memory appended after the warm-up: milliseconds spent in each stage."""
        out: dict[str, dict[str, float]] = {}
        for memory_id, called in seen.appended.items():
            if called < warm_up_until or memory_id not in seen.visible:
                continue
            times = [called, *(self.marks[m].get(memory_id) for m in _MARKS), seen.visible[memory_id]]
            if any(t is None for t in times):
                continue
            known = [t for t in times if t is not None]
            steps = zip(STAGES, known[:-1], known[1:], strict=True)
            out[memory_id] = {stage: (b - a) * 1000 for stage, a, b in steps}
        return out


def _memory_id(stream_id: str) -> str:
    return stream_id.removeprefix("memory-")


def stage_notes(stages: dict[str, dict[str, float]], latency_ms: dict[str, float]) -> list[str]:
    """Each stage's p50 / p99, and its share of the latency of the events at or above the p99."""
    if not stages:
        return ["stages: none timed"]
    notes = []
    for stage in STAGES:
        values = [s[stage] for s in stages.values()]
        notes.append(
            f"stage {stage}: p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms"
        )
    cut = percentile([latency_ms[m] for m in stages], 99)
    tail = [m for m in stages if latency_ms[m] >= cut]
    total = sum(latency_ms[m] for m in tail) or 1.0
    shares = ", ".join(f"{stage} {sum(stages[m][stage] for m in tail) / total:.0%}" for stage in STAGES)
    notes.append(f"tail (the {len(tail)} events at or above p99 {cut:.1f} ms): {shares}")
    return notes


Append = Callable[[int], Coroutine[object, object, object]]


async def paced(
    rate_per_s: float,
    seconds: float,
    append: Append,
    seen: Visibility,
    prefix: str,
    clock: StageClock | None = None,
) -> float:
    """Call ``append(n)`` open-loop at ``rate_per_s``; the time the warm-up ends."""
    count = int(rate_per_s * seconds)
    seen.expected = count
    started = time.perf_counter()
    tasks: list[asyncio.Task[object]] = []
    for n in range(count):
        delay = started + n / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        seen.appended[f"{prefix}-{n}"] = time.perf_counter()
        tasks.append(asyncio.create_task(_marked(append, n, f"{prefix}-{n}", clock)))
    await asyncio.gather(*tasks)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(seen.all_visible.wait(), SETTLE_TIMEOUT)
    if len(seen.visible) < count:
        raise RuntimeError(f"only {len(seen.visible)} of {count} events became visible in {SETTLE_TIMEOUT}s")
    return started + WARM_UP


async def _marked(append: Append, n: int, memory_id: str, clock: StageClock | None) -> object:
    result = await append(n)
    if clock is not None:
        clock.mark("appended", [memory_id])
    return result


async def memsaga_latencies(
    ctx: BenchContext, dsn: str, store: PostgresEventStore
) -> tuple[list[float], list[str]]:
    """Latencies (ms) through memsaga's relay, JetStream and projection runner, and the stage notes."""
    active = await ensure_built(store.pool, store, MEMORIES)
    table = MEMORIES.tables_at(active.version)["memories"]
    await store.pool.execute(_VISIBLE_TRIGGER.format(table=table, channel="memsaga_visible"))
    stream, prefix = ctx.unique_stream("e2e")
    nc = await connect_nats(ctx.settings.require_nats_url(), name="memsaga-bench-e2e")
    js = nc.jetstream()
    relay = Relay(
        store,
        js,
        RelayConfig(
            stream=stream, subject_prefix=prefix, poll_interval=ctx.settings.relay_poll_interval_seconds
        ),
        listen_dsn=dsn,
    )
    runner = ProjectionRunner(MEMORIES, store, js, RunnerConfig(stream=stream, subject_prefix=prefix))
    clock = StageClock()
    clock.watch(relay, runner)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    seen = Visibility()
    listener = await asyncpg.connect(dsn)
    await listener.add_listener("memsaga_visible", seen.on_visible)
    key = f"e2e-{ctx.run_id}"

    async def append(n: int) -> object:
        event = append_event(n, prefix=key)
        return await store.append(f"memory-{key}-{n}", [event], expected_version=NO_STREAM)

    try:
        await asyncio.sleep(0.5)  # the relay and runner are up (consumer bound) before the clock starts
        warm = await paced(ctx.sizes.e2e_rate, ctx.sizes.e2e_seconds, append, seen, key, clock)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.close()
        await drop_stream(js, stream)
        await nc.close()
    latency = seen.latency_by_id(warm)
    return list(latency.values()), stage_notes(clock.stages_ms(seen, warm), latency)


async def plain_latencies(ctx: BenchContext, dsn: str, pool: asyncpg.Pool) -> list[float]:
    """Latencies (ms) through plain INSERT → NOTIFY → LISTEN → INSERT … SELECT."""
    await pool.execute(_PLAIN_DDL)
    ddl = MEMORIES.ddl.replace("{memories}", "plain.memories")
    await pool.execute(ddl.replace("{memory_lifecycle}", "plain.memory_lifecycle"))
    await pool.execute(_VISIBLE_TRIGGER.replace("bench_visible", "plain_visible").format(
        table="plain.memories", channel="plain_visible"))  # fmt: skip
    seen = Visibility()
    listener = await asyncpg.connect(dsn)
    await listener.add_listener("plain_visible", seen.on_visible)
    wake = asyncio.Event()
    consumer = await asyncpg.connect(dsn)
    await consumer.add_listener("plain_appended", lambda *_: wake.set())
    stop = asyncio.Event()

    async def project() -> None:
        last = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
            wake.clear()
            await consumer.execute(_PLAIN_PROJECT, max(last - 1000, 0))  # overlap: late commits
            last = await consumer.fetchval("SELECT coalesce(max(position), 0) FROM plain.events")

    key = f"plain-{ctx.run_id}"

    async def append(n: int) -> object:
        event = append_event(n, prefix=key)
        return await pool.execute(_PLAIN_INSERT, *baseline_row(event, f"memory-{key}-{n}", 1))

    task = asyncio.create_task(project())
    try:
        warm = await paced(ctx.sizes.e2e_rate, ctx.sizes.e2e_seconds, append, seen, key)
    finally:
        stop.set()
        wake.set()
        await task
        await listener.close()
        await consumer.close()
    return seen.latencies_ms(warm)


async def run(ctx: BenchContext) -> list[Figure]:
    """Both paths, one after the other, each on its own fresh database."""
    ctx.progress.start("end to end", 2)
    async with ctx.database() as dsn, ctx.store(dsn) as store:
        subject, stages = await memsaga_latencies(ctx, dsn, store)
    ctx.progress.advance()
    async with ctx.database() as dsn, ctx.store(dsn) as store:
        baseline = await plain_latencies(ctx, dsn, store.pool)
    ctx.progress.advance()
    rate_per_s, size = (
        ctx.sizes.e2e_rate,
        f"{len(subject):,} events at {ctx.sizes.e2e_rate:g}/s after warm-up",
    )
    figures = []
    for pct in (50, 99):
        figures.append(
            Figure.compare(
                f"end_to_end.p{pct}",
                benchmark="end_to_end",
                title=f"append → visible in memories, p{pct}, vs PostgreSQL-only LISTEN/NOTIFY copy",
                unit="ms",
                higher_is_better=False,
                subject=Measurement.of("memsaga relay + JetStream + runner", [percentile(subject, pct)]),
                baseline=Measurement.of("asyncpg insert + LISTEN + copy", [percentile(baseline, pct)]),
                target=None
                if pct == 50
                else Target(
                    kind="value_below",
                    threshold=100.0,
                    text="p99 < 100 ms at 1,000 events/s",
                    applies=rate_per_s == TARGET_RATE,
                ),
                size=size,
                notes=[f"max {max(subject):.1f} ms (baseline {max(baseline):.1f} ms)", *stages],
            )
        )
    return figures
