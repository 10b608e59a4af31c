"""Benchmark 1: appends, one event per call (1 and 8 writers) and 100 events per call.

* memsaga: ``PostgresEventStore.append(stream, events, expected_version=NO_STREAM)``, each
  writer on its own new streams (one per event, or one per batch).
* baseline: plain asyncpg inserting the same rows into ``bench.events``, a copy of
  ``memsaga.events`` with the same keys, constraints and indexes (``LIKE … INCLUDING ALL``)
  but no triggers and its own sequence; one ``INSERT`` per event through the pool, and
  for batches one ``COPY`` per 100 rows (``copy_records_to_table``: the fastest plain way
  here, level with ``INSERT … SELECT unnest(…)`` and ahead of ``executemany``).
* peer: ``eventsourcing``'s PostgreSQL recorders on another database of the same server.
* reference: the same plain asyncpg inserts, each connection handed back without the pool's
  reset query, as memsaga's pool does after an append (``eventstore/pool.py``): what memsaga's
  own work costs, apart from the round trip it saves.
* diagnosis (single-event appends): memsaga on a database where a relay's doorbell is armed
  (``projections/migrations/0002``), so that every append sends the relay's NOTIFY, as
  while a relay that has caught up waits; the main figures run with no relay waiting.

Sides alternate within each round; every figure is the median of the rounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from bench.context import BenchContext
from bench.dataset import BASELINE_COLUMNS, BaselineRow, append_event, baseline_row, fill_store
from bench.harness import Side, interleaved, rate
from bench.peer_eventsourcing import Peer
from bench.results_model import Figure, Measurement, Target
from eventstore import NO_STREAM, NewEvent, PostgresEventStore
from eventstore.codec import dump_json
from eventstore.pool import mark_session_clean

BASELINE_DDL = """
CREATE SCHEMA bench;
CREATE SEQUENCE bench.events_position_seq AS bigint CACHE 1;
CREATE TABLE bench.events (LIKE memsaga.events INCLUDING ALL);
ALTER TABLE bench.events ALTER COLUMN position SET DEFAULT nextval('bench.events_position_seq');
ALTER SEQUENCE bench.events_position_seq OWNED BY bench.events.position;
"""
_INSERT_ONE = """INSERT INTO bench.events (event_id, stream_id, version, event_type, event_version,
    correlation_id, causation_id, user_id, occurred_at, payload, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb)"""
WRITERS = (1, 8)
MEMSAGA, BASELINE, PEER_APP, PEER_AGG = "memsaga", "asyncpg", "eventsourcing-app", "eventsourcing-agg"
NO_RESET = "asyncpg-no-reset"
RUNG = "memsaga-doorbell-armed"
Work = list[list[NewEvent]]  # per call: the events of one new stream


def _work(prefix: str, calls: int, per_call: int) -> Work:
    return [[append_event(c * per_call + i, prefix=prefix) for i in range(per_call)] for c in range(calls)]


def _stream(prefix: str, call: int) -> str:
    return f"memory-{prefix}-{call}"


async def _timed_writers(writers: int, calls: Sequence[Callable[[], Awaitable[object]]]) -> float:
    """Run ``calls`` on ``writers`` concurrent writers (each its own share, in order); seconds."""

    async def writer(share: Sequence[Callable[[], Awaitable[object]]]) -> None:
        for call in share:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(writer(calls[w::writers]) for w in range(writers)))
    return time.perf_counter() - started


async def _seed(pool: asyncpg.Pool, events: int, *, with_baseline: bool) -> None:
    """Give the stores history and statistics, as a live one has: the same rows on both sides.

    On a fresh, never-analysed table PostgreSQL may cache a generic plan that scans the
    whole table for ``append_events``' duplicate check; seeded and analysed, it does not.
    """
    await fill_store(pool, events)
    if with_baseline:
        await pool.execute(BASELINE_DDL)
        await pool.execute("INSERT INTO bench.events SELECT * FROM memsaga.events")
        await pool.execute(
            "SELECT setval('bench.events_position_seq', (SELECT max(position) FROM bench.events))"
        )
        await pool.execute("VACUUM (ANALYZE) bench.events")


def _append(
    store: PostgresEventStore, stream: str, events: list[NewEvent]
) -> Callable[[], Awaitable[object]]:
    return lambda: store.append(stream, events, expected_version=NO_STREAM)


class _Sides:
    def __init__(self, ctx: BenchContext, pool: asyncpg.Pool, peers: dict[str, Peer]) -> None:
        self.ctx = ctx
        self.pool = pool
        self.peers = peers

    def _prefix(self, side: str, mode: str, writers: int, r: int) -> str:
        return f"{side}-{mode}{writers}-r{r}-{self.ctx.run_id}"

    def memsaga(self, mode: str, writers: int, calls: int, per_call: int, store: PostgresEventStore) -> Side:
        async def side(r: int) -> float:
            prefix = self._prefix("m", mode, writers, r)
            work = _work(prefix, calls, per_call)
            ops = [_append(store, _stream(prefix, c), events) for c, events in enumerate(work)]
            return rate(calls * per_call, await _timed_writers(writers, ops))

        return side

    def baseline(self, mode: str, writers: int, calls: int, per_call: int, *, reset: bool = True) -> Side:
        """Plain asyncpg; ``reset=False`` hands each connection back without the pool's reset."""

        async def side(r: int) -> float:
            prefix = self._prefix("b" if reset else "n", mode, writers, r)
            rows = [
                [baseline_row(e, _stream(prefix, c), v + 1) for v, e in enumerate(events)]
                for c, events in enumerate(_work(prefix, calls, per_call))
            ]
            ops = [self._insert(call_rows, reset) for call_rows in rows]
            return rate(calls * per_call, await _timed_writers(writers, ops))

        return side

    def _insert(self, rows: list[BaselineRow], reset: bool) -> Callable[[], Awaitable[object]]:
        async def insert() -> None:
            async with self.pool.acquire() as conn:
                if len(rows) == 1:
                    await conn.execute(_INSERT_ONE, *rows[0])
                else:
                    await conn.copy_records_to_table(
                        "events", schema_name="bench", columns=BASELINE_COLUMNS, records=rows
                    )
                if not reset:
                    mark_session_clean(conn)

        return insert

    def peer(self, name: str, mode: str, writers: int, calls: int, per_call: int) -> Side:
        peer = self.peers[name]

        async def side(r: int) -> float:
            prefix = self._prefix("p", mode, writers, r)
            states = [dump_json(e.payload).encode() for c in _work(prefix, calls, per_call) for e in c]
            groups = Peer.batches(states, per_call)
            seconds = await asyncio.to_thread(peer.save, groups, writers)
            return rate(calls * per_call, seconds)

        return side


async def run(ctx: BenchContext) -> list[Figure]:
    """Measure every append setup; figures against asyncpg and against eventsourcing."""
    sizes = ctx.sizes
    setups = [("single", w, sizes.append_events, 1) for w in WRITERS]
    setups += [("batch", w, sizes.append_batches, sizes.batch_size) for w in WRITERS]
    ctx.progress.start("appends", sizes.rounds * (6 * len(WRITERS) + 5 * len(WRITERS)))
    figures: list[Figure] = []
    async with (
        ctx.database() as dsn,
        ctx.database() as rung_dsn,
        ctx.database(migrated=False) as peer_dsn,
        ctx.store(dsn) as store,
        ctx.store(rung_dsn) as rung,
    ):
        await _seed(store.pool, sizes.append_seed_events, with_baseline=True)
        await _seed(rung.pool, sizes.append_seed_events, with_baseline=False)
        await rung.pool.execute("INSERT INTO memsaga.relay_doorbells (stream, armed) VALUES ('bench', true)")
        peers = {
            PEER_APP: Peer(peer_dsn, application=True, pool_size=max(WRITERS)),
            PEER_AGG: Peer(peer_dsn, application=False, pool_size=max(WRITERS)),
        }
        try:
            sides = _Sides(ctx, store.pool, peers)
            for mode, writers, calls, per_call in setups:
                compared = {
                    MEMSAGA: sides.memsaga(mode, writers, calls, per_call, store),
                    BASELINE: sides.baseline(mode, writers, calls, per_call),
                    NO_RESET: sides.baseline(mode, writers, calls, per_call, reset=False),
                    PEER_APP: sides.peer(PEER_APP, mode, writers, calls, per_call),
                    PEER_AGG: sides.peer(PEER_AGG, mode, writers, calls, per_call),
                }
                if mode == "single":
                    compared[RUNG] = sides.memsaga(mode, writers, calls, per_call, rung)
                samples = await interleaved(sizes.rounds, compared, on_round=ctx.progress.advance)
                figures += _figures(mode, writers, calls * per_call, samples)
        finally:
            for peer in peers.values():
                peer.close()
    return figures


def _figures(mode: str, writers: int, events: int, samples: dict[str, list[float]]) -> list[Figure]:
    what = "one event per call" if mode == "single" else "100 events per call"
    key = f"appends.{mode}.w{writers}"
    subject = Measurement.of("memsaga append", samples[MEMSAGA])
    floor = 0.7 if mode == "single" else 0.8

    def compare(suffix: str, against: str, baseline: Measurement, target: Target | None, note: str) -> Figure:
        return Figure.compare(
            key + suffix,
            benchmark="appends",
            title=f"append, {what}, {writers} writer(s) vs {against}",
            unit="events/s",
            subject=subject,
            baseline=baseline,
            target=target,
            size=f"{events:,} events per round",
            notes=[note] if note else [],
        )

    plain = "asyncpg insert" if mode == "single" else "asyncpg COPY"
    figures = [
        compare(
            "",
            "plain asyncpg",
            Measurement.of(plain, samples[BASELINE]),
            Target(kind="ratio_at_least", threshold=floor, text=f">= {floor}x asyncpg"),
            "",
        ),
        compare(
            ".vs-eventsourcing",
            "eventsourcing (application recorder)",
            Measurement.of("eventsourcing PostgresApplicationRecorder", samples[PEER_APP]),
            Target(kind="ratio_at_least", threshold=2.0, text=">= 2x eventsourcing"),
            "the same job: a global order readers can follow without gaps (eventsourcing: a table lock"
            " and a NOTIFY per insert; memsaga: transaction-id fences, NOTIFY only while a relay waits)",
        ),
        compare(
            ".vs-eventsourcing-aggregate",
            "eventsourcing (aggregate recorder)",
            Measurement.of("eventsourcing PostgresAggregateRecorder", samples[PEER_AGG]),
            None,
            "less work than memsaga (no global order, no notification): for reference, no target",
        ),
        compare(
            ".vs-asyncpg-no-reset",
            "plain asyncpg without the pool's reset",
            Measurement.of(f"{plain}, no reset", samples[NO_RESET]),
            None,
            "memsaga's pool skips asyncpg's reset query after an append (eventstore/pool.py); this baseline"
            " skips it too, so the ratio shows memsaga's own work per call: for reference, no target",
        ),
    ]
    if RUNG in samples:
        figures.append(
            Figure.compare(
                f"{key}.doorbell-armed",
                benchmark="appends",
                title=f"diagnosis: append, {what}, {writers} writer(s), every append notifies, vs asyncpg",
                unit="events/s",
                subject=Measurement.of("memsaga append, doorbell armed", samples[RUNG]),
                baseline=Measurement.of("asyncpg insert", samples[BASELINE]),
                size=f"{events:,} events per round",
                notes=["appends while a caught-up relay waits for them (each sends NOTIFY); no target"],
            )
        )
    return figures
