"""Benchmark 8: point-in-time queries of one user's memories, read model vs a fold of the events.

One user gets ``MEMORIES`` memories and ``EVENTS`` lifecycle events in all (each memory is
created, then superseded, invalidated, reinstated and, for a few, retracted: generated from
a fixed seed), appended round by round so that system times interleave across memories. The
``memories`` read model is built from the store (:func:`ensure_built`, timed for the notes).

Then, for ``QUERIES_FULL`` random moments each, three queries: ``as_of`` (system time),
``valid_at`` (world time) and both together. memsaga's side is
:func:`projections.memories.query_memories`; the baseline reads the user's events from the
event store (one indexed query, decoded as the store decodes) and folds each memory's stream in
Python with :func:`sagas.memory_extraction.lifecycle.memory_as_of`. Both sides must return the
same memories (the run fails otherwise). The baseline, hundreds of times slower, answers one
query in ``BASELINE_EVERY``, so that the run stays under two minutes. Sides alternate per query;
warm-up queries are not timed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.context import BenchContext, Sizes
from bench.harness import Stopwatch, percentile
from bench.results_model import Figure, Measurement, Target
from eventstore import EventPayload, NewEvent, PostgresEventStore, RecordedEvent
from eventstore.columns import SELECT_LIST, decode_row
from projections import MEMORIES, ensure_built
from projections.memories import LISTED_STATUSES, memories_sql, query_memories
from sagas.memory_extraction import events as ev
from sagas.memory_extraction.lifecycle import MemoryState, memory_as_of, memory_state

MEMORIES_FULL, EVENTS_FULL, QUERIES_FULL = 1_000, 10_000, 100
MEMORIES_QUICK, EVENTS_QUICK, QUERIES_QUICK = 100, 1_000, 15
WARM_UP = 5
BASELINE_EVERY = 5  # the baseline answers one query in five: 20 of the 100 (a few in quick runs)
CONCURRENT_APPENDS = 8
P95_TARGET_MS = 20.0
USER = "bench-user"
WORLD = datetime(2020, 1, 1, tzinfo=UTC)
SEED = 14

Key = tuple[str, str, datetime | None]


@dataclass(frozen=True)
class Shape:
    """How big this run's data set is (``--quick`` shrinks it tenfold)."""

    memories: int
    events: int
    queries: int

    @property
    def full(self) -> bool:
        return (self.memories, self.events) == (MEMORIES_FULL, EVENTS_FULL)

    @property
    def size(self) -> str:
        return f"{self.memories:,} memories, {self.events:,} lifecycle events, one user"


def shape(sizes: Sizes) -> Shape:
    """The full data set, or the quick one when the run's sizes are the quick ones."""
    if sizes.rounds < Sizes().rounds:
        return Shape(MEMORIES_QUICK, EVENTS_QUICK, QUERIES_QUICK)
    return Shape(MEMORIES_FULL, EVENTS_FULL, QUERIES_FULL)


def lives(memories: int, events: int, *, seed: int = SEED) -> list[list[NewEvent]]:
    """Each memory's events (``events // memories`` each): creation, then endings and
    reinstatements of them, and for about one memory in twenty a retraction last."""
    rng = random.Random(seed)
    per = events // memories
    streams = []
    for i in range(memories):
        memory_id = f"m-{i:05d}"
        start = WORLD + timedelta(days=rng.randrange(0, 1500))
        created = NewEvent.of(
            ev.MemoryCreated(
                memory_id=memory_id, user_id=USER, episode_id=f"ep-{i}", text=f"User fact number {i}",
                kind="fact", content_hash=f"{i:064x}", vector_sha256=None, dimension=None, embedder=None,
                source="chat", slot=f"slot-{i % 50}", value=str(i), valid_from=start,
            ),
            correlation_id=f"corr-{i}", causation_id="bench", occurred_at=start, user_id=USER,
        )  # fmt: skip
        stream, ended = [created], None
        end = start
        for step in range(1, per):
            end += timedelta(days=rng.randrange(1, 60))
            payload: EventPayload
            if step == per - 1 and rng.random() < 0.05:
                payload = ev.MemoryRetracted(
                    memory_id=memory_id,
                    user_id=USER,
                    compensates_event_id=str(created.event_id),
                    reason="asked",
                )
            elif ended is not None and rng.random() < 0.5:
                payload = ev.MemoryReinstated(
                    memory_id=memory_id,
                    user_id=USER,
                    compensates_event_id=str(ended.event_id),
                    reason="undone",
                )
            elif rng.random() < 0.5:
                payload = ev.MemorySuperseded(
                    memory_id=memory_id, user_id=USER, successor_id=f"m-{rng.randrange(memories):05d}",
                    valid_to=end, episode_id=f"ep-{i}-{step}",
                )  # fmt: skip
            else:
                payload = ev.MemoryInvalidated(
                    memory_id=memory_id,
                    user_id=USER,
                    valid_to=end,
                    episode_id=f"ep-{i}-{step}",
                    statement="no",
                )
            event = NewEvent.of(
                payload,
                correlation_id=f"corr-{i}-{step}",
                causation_id="bench",
                occurred_at=end,
                user_id=USER,
            )
            stream.append(event)
            ended = event if payload.event_type in ("MemorySuperseded", "MemoryInvalidated") else None
        streams.append(stream)
    return streams


async def fill(store: PostgresEventStore, streams: list[list[NewEvent]]) -> None:
    """Round r appends event r of every memory (a few appends at a time), so system times interleave."""
    for r in range(max(len(s) for s in streams)):
        due = [(f"memory-{s[0].payload['memory_id']}", s[r]) for s in streams if r < len(s)]
        for start in range(0, len(due), CONCURRENT_APPENDS):
            chunk = due[start : start + CONCURRENT_APPENDS]
            await asyncio.gather(*(store.append(stream, [event]) for stream, event in chunk))


_USER_EVENTS = f"SELECT {SELECT_LIST} FROM memsaga.events WHERE user_id = $1 ORDER BY position"


async def folded(
    pool: asyncpg.Pool, store: PostgresEventStore, as_of: datetime | None, valid_at: datetime | None
) -> set[Key]:
    """The baseline: read the user's events from the store and fold each memory in Python."""
    rows = await pool.fetch(_USER_EVENTS, USER)
    streams: dict[str, list[RecordedEvent]] = {}
    for event in await store.open_events([decode_row(row, store.registry) for row in rows]):
        streams.setdefault(event.stream_id, []).append(event)
    wanted = LISTED_STATUSES if valid_at is not None else ("current",)
    found: set[Key] = set()
    for events in streams.values():
        now = memory_state(events)
        if now is None or now.status == "retracted":
            continue
        state: MemoryState | None = now if as_of is None else memory_as_of(events, as_of)
        if state is None or state.created_event_id is None or state.status not in wanted:
            continue
        if valid_at is None or state.valid_at(valid_at):
            found.add((state.memory_id, state.status, state.valid_to))
    return found


async def from_read_model(pool: asyncpg.Pool, as_of: datetime | None, valid_at: datetime | None) -> set[Key]:
    """memsaga's side: one query of the read model."""
    return {
        (m.memory_id, m.status, m.valid_to)
        for m in await query_memories(pool, USER, as_of=as_of, valid_at=valid_at)
    }


Query = tuple[datetime | None, datetime | None]


async def time_sides(
    subject: Callable[[Query], Awaitable[set[Key]]],
    baseline: Callable[[Query], Awaitable[set[Key]]],
    asked: list[Query],
) -> tuple[list[float], list[float]]:
    """Every query on memsaga's side, every ``BASELINE_EVERY``-th on the baseline's too (it takes
    hundreds of times longer), alternating who goes first; their answers must agree."""
    ms: tuple[list[float], list[float]] = ([], [])
    for i, query in enumerate(asked):
        sides = [(0, subject)] + ([(1, baseline)] if i % BASELINE_EVERY == 0 else [])
        answers = []
        for side, fn in sides if i % 2 == 0 else sides[::-1]:
            with Stopwatch() as sw:
                answers.append(await fn(query))
            if i >= WARM_UP:
                ms[side].append(sw.seconds * 1000)
        if len(answers) == 2 and answers[0] != answers[1]:
            raise RuntimeError(f"the read model and the fold disagree for as_of, valid_at = {query}")
    return ms


async def run(ctx: BenchContext) -> list[Figure]:
    """Fill, build, then time the three kinds of query on both sides."""
    s = shape(ctx.sizes)
    ctx.progress.start(f"point in time: {s.size}", 4)
    streams = lives(s.memories, s.events)
    async with ctx.database() as dsn, ctx.store(dsn) as store:
        pool = store.pool
        with Stopwatch() as filling:
            await fill(store, streams)
        ctx.progress.advance()
        with Stopwatch() as build:
            active = await ensure_built(pool, store, MEMORIES)
        for table in MEMORIES.tables_at(active.version).values():
            await pool.execute(f"VACUUM (ANALYZE) {table}")
        ctx.progress.advance()
        span = await pool.fetchrow(
            "SELECT min(recorded_at) AS first, max(recorded_at) AS last FROM memsaga.events"
        )
        assert span is not None
        first: datetime = span["first"]
        last: datetime = span["last"]
        rng = random.Random(SEED)

        def system_time() -> datetime:
            return first + (last - first) * rng.random()

        def world_time() -> datetime:
            return WORLD + timedelta(days=rng.uniform(0, 1800))

        n = s.queries + WARM_UP
        kinds: dict[str, list[Query]] = {
            "as_of": [(system_time(), None) for _ in range(n)],
            "valid_at": [(None, world_time()) for _ in range(n)],
            "as_of_and_valid_at": [(system_time(), world_time()) for _ in range(n)],
        }
        timings = {
            kind: await time_sides(
                lambda q: from_read_model(pool, *q), lambda q: folded(pool, store, *q), asked
            )
            for kind, asked in kinds.items()
        }
        ctx.progress.advance()
        middle = first + (last - first) / 2
        plan = await pool.fetchval(
            f"EXPLAIN (FORMAT JSON) {memories_sql(as_of=True)}", USER, ["current"], None, middle
        )
    ctx.progress.advance()
    notes = [
        f"{s.events:,} events appended in {filling.seconds:.1f} s; read model built from the store in"
        f" {build.seconds:.2f} s",
        f"{s.queries} timed queries per kind after {WARM_UP} warm-up ones; the baseline answers every"
        f" {BASELINE_EVERY}th of them ({len(timings['as_of'][1])}), and both sides returned the same"
        " memories for each",
        f"as_of plan: {_plan_nodes(plan)}",
    ]
    figures = []
    for kind, (subject, baseline) in timings.items():
        for pct in (50, 95):
            figures.append(
                Figure.compare(
                    f"point_in_time.{kind}.p{pct}",
                    benchmark="point-in-time",
                    title=f"{kind.replace('_', ' ')} query p{pct}: read model vs a fold of the events",
                    unit="ms",
                    higher_is_better=False,
                    subject=_latency("query_memories() on the read model", subject, pct),
                    baseline=_latency("read the user's events + lifecycle.memory_as_of", baseline, pct),
                    target=(
                        Target(
                            kind="value_below", threshold=P95_TARGET_MS, text="p95 < 20 ms", applies=s.full
                        )
                        if pct == 95
                        else None
                    ),
                    size=s.size,
                    notes=notes,
                )
            )
    return figures


def _latency(label: str, ms: list[float], pct: int) -> Measurement:
    return Measurement(label=label, value=percentile(ms, pct), samples=[round(x, 3) for x in ms])


def _plan_nodes(plan: object) -> str:
    data = json.loads(plan) if isinstance(plan, str) else plan
    nodes: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "Node Type" in node:
                index = node.get("Index Name")
                nodes.append(f"{node['Node Type']} using {index}" if index else str(node["Node Type"]))
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)

    walk(data)
    return ", ".join(dict.fromkeys(nodes))
