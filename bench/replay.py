"""Benchmark 2: replay, ``read_all`` of the whole data set into envelopes.

* memsaga: ``PostgresEventStore.read_all(batch_size=1000)``: gap-safe batches of
  :class:`RecordedEvent` (snapshot check, upcasting, envelope construction).
* baseline: plain asyncpg fetching the same rows by position, 1,000 at a time, the same
  columns, and decoding the payload and metadata JSON with ``json.loads``.
* for reference (no target): the same plain reader decoding with ``orjson``, the JSON
  library memsaga itself uses, so that what memsaga adds besides a faster decoder shows.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from bench.context import BenchContext
from bench.harness import Deliveries, Stopwatch, interleaved, rate
from bench.results_model import Figure, Measurement, Target
from eventstore import PostgresEventStore

BATCH = 1000
_ROWS = """SELECT event_id, stream_id, version, position, event_type, event_version, correlation_id,
    causation_id, user_id, occurred_at, recorded_at, payload::text AS payload, metadata::text AS metadata
    FROM memsaga.events WHERE position > $1 ORDER BY position LIMIT $2"""


async def read_with_store(store: PostgresEventStore) -> int:
    """Events read through ``read_all``."""
    count = 0
    async for batch in store.read_all(batch_size=BATCH):
        count += len(batch)
    return count


async def read_plain(pool: asyncpg.Pool, loads: Callable[[str], object] = json.loads) -> int:
    """Rows fetched and decoded with plain asyncpg (``json.loads`` unless told otherwise)."""
    count, position = 0, 0
    while rows := await pool.fetch(_ROWS, position, BATCH):
        for row in rows:
            loads(row["payload"])
            loads(row["metadata"])
        count += len(rows)
        position = rows[-1]["position"]
    return count


async def run(ctx: BenchContext) -> list[Figure]:
    """Replay the data set both ways, alternating, ``replay_rounds`` times each."""
    data = await ctx.dataset()
    rounds = ctx.sizes.replay_rounds
    async with ctx.store(data.dsn) as store:
        expected = await store.head_position()

        deliveries = Deliveries()

        async def memsaga(_: int) -> float:
            with Stopwatch() as sw:
                count = await read_with_store(store)
            deliveries.record(count, expected)
            return rate(count, sw.seconds)

        async def baseline(_: int) -> float:
            return await _timed(lambda: read_plain(store.pool), expected)

        async def reference(_: int) -> float:
            return await _timed(lambda: read_plain(store.pool, orjson.loads), expected)

        ctx.progress.start("replay", rounds * 3)
        sides = {"memsaga": memsaga, "asyncpg": baseline, "asyncpg-orjson": reference}
        samples = await interleaved(rounds, sides, ctx.progress.advance)
    applies = expected >= 1_000_000
    return [
        Figure.compare(
            "replay.read_all",
            benchmark="replay",
            title="replay: read_all into envelopes vs plain asyncpg fetch + json.loads",
            unit="events/s",
            subject=Measurement.of("memsaga read_all", samples["memsaga"]),
            baseline=Measurement.of("asyncpg fetch + json.loads", samples["asyncpg"]),
            target=Target(kind="ratio_at_least", threshold=0.5, text=">= 0.5x asyncpg"),
            size=f"{expected:,} events per round",
            notes=[] if applies else ["smaller than the 1,000,000 events the target is stated for"],
            delivered=deliveries.worst,
        ),
        Figure.compare(
            "replay.read_all.vs-orjson",
            benchmark="replay",
            title="replay: read_all vs plain asyncpg fetch + orjson.loads (memsaga's decoder)",
            unit="events/s",
            subject=Measurement.of("memsaga read_all", samples["memsaga"]),
            baseline=Measurement.of("asyncpg fetch + orjson.loads", samples["asyncpg-orjson"]),
            target=None,
            size=f"{expected:,} events per round",
            notes=["for reference: what memsaga adds to a plain reader with the same JSON decoder"],
            delivered=deliveries.worst,
        ),
    ]


async def _timed(read: Callable[[], Awaitable[int]], expected: int) -> float:
    with Stopwatch() as sw:
        count = await read()
    if count != expected:
        raise RuntimeError(f"replay read {count} events, expected {expected}")
    return rate(count, sw.seconds)
