"""Each live read model equals a rebuild from the event store, compared by content hash.

One transaction per projection, at ``REPEATABLE READ``, that is always rolled back:

1. In its snapshot, the active version, the hash of each live table and the set of events
   that version has applied (``memsaga.projection_applied``, written in the same
   transactions as the tables, so the three agree).
2. Those events, read from the store (opened, in position order) before this transaction
   writes anything: until then it holds no transaction id, which the store's gap-safe tail
   would wait for. A forgotten user's events are skipped, as the runner skips them.
3. A scratch schema (``memsaga_verify_<hex>``) with the projection's DDL, into which the
   projection's own handlers (with the store's vault, for sealed blobs) apply those events.
   Each comes once, in order: what a live runner got through duplicates, redeliveries and
   disorder must come to the same rows. (A ``UserForgotten`` handler deletes the user's rows
   in every registered version: there were none left to delete, and the rollback undoes it.)
4. The hash of each scratch table; then the rollback, which leaves no trace. The live tables,
   the checkpoints and the bookkeeping are only read.

Comparing with what the live version applied (not with the whole store) makes the check
exact on a running deployment: lag is not a difference here, it is reported by the
positions check. A hash is the md5 of the sorted md5s of each row as JSON, minus
:data:`VOLATILE_COLUMNS` (none today: the handlers are deterministic, every timestamp comes
from an event).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from eventstore import PostgresEventStore, RecordedEvent
from eventstore.postgres import Connection
from memsaga.verify.report import ReadModelCheck, TableDigest
from projections.base import Projection, Tables, quote_ident
from projections.parked import list_parked
from projections.sealed import erased, using_vault
from projections.tracking import applied_event_ids
from projections.versions import active_checkpoint

BATCH = 500
TAIL_TIMEOUT = 10.0
VOLATILE_COLUMNS: Mapping[str, tuple[str, ...]] = {}
"""Columns left out of a table's hash because a rebuild may legitimately differ there, by
logical table name. Empty: no shipped read model stores a clock or a random value."""

_DIGEST = """SELECT count(*) AS n,
    md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS digest
    FROM (SELECT md5((to_jsonb(t) - $1::text[])::text) AS h FROM {table} t) rows"""


async def table_digest(conn: Connection, table: str, volatile: Sequence[str] = ()) -> tuple[int, str]:
    """Rows and content hash of ``table`` (a qualified name), without the ``volatile`` columns."""
    row = await conn.fetchrow(_DIGEST.format(table=table), list(volatile))
    assert row is not None
    return int(row["n"]), str(row["digest"])


def scratch_tables(projection: Projection, schema: str) -> Tables:
    """The projection's tables in ``schema`` (same logical names)."""
    return Tables({t: f"{quote_ident(schema)}.{quote_ident(t)}" for t in projection.tables})


def scratch_ddl(projection: Projection, tables: Tables) -> str:
    """The projection's DDL creating ``tables``."""
    sql = projection.ddl
    for logical, physical in tables.items():
        sql = sql.replace("{" + logical + "}", physical)
    return sql


async def apply_in_order(
    conn: Connection, projection: Projection, tables: Tables, events: Sequence[RecordedEvent]
) -> None:
    """Apply ``events`` with the projection's handlers, in order, without any bookkeeping:
    a run of one batch handler's types in one call (as the runner does), else one by one."""
    run: list[RecordedEvent] = []

    def key(event: RecordedEvent) -> object:
        return projection.batch_handlers.get(event.event_type) or event.event_type

    async def flush() -> None:
        if not run:
            return
        batch = projection.batch_handlers.get(run[0].event_type)
        if batch is not None and len(run) > 1:
            await batch(conn, tables, list(run))
        else:
            for event in run:
                await projection.handlers[event.event_type](conn, tables, event)
        run.clear()

    for event in events:
        if run and key(run[-1]) != key(event):
            await flush()
        run.append(event)
    await flush()


async def _applied_events(
    store: PostgresEventStore,
    projection: Projection,
    applied: set[uuid.UUID],
    parked: set[uuid.UUID],
    checkpoint: int,
    max_lag: float,
) -> tuple[list[RecordedEvent], int]:
    """The ``applied`` events from the store in position order, and how many events the
    projection handles at or below ``checkpoint``, older than ``max_lag``, were neither
    applied nor parked. An applied event the tail has not reached yet (a writer still running
    when the read began) is waited for up to :data:`TAIL_TIMEOUT` seconds.
    """
    handled = set(projection.event_types)
    settled = datetime.now(UTC) - timedelta(seconds=max_lag)
    events: list[RecordedEvent] = []
    unapplied = 0
    position = 0
    deadline = time.monotonic() + TAIL_TIMEOUT
    while True:
        async for batch in store.read_all(after_position=position):
            position = batch[-1].position
            for e in batch:
                if e.event_type not in handled or erased(e):
                    continue  # a forgotten user's events reach no handler, live or here
                if e.event_id in applied:
                    events.append(e)
                elif e.position <= checkpoint and e.event_id not in parked and e.recorded_at < settled:
                    unapplied += 1
        if len(events) >= len(applied) or time.monotonic() > deadline:
            return events, unapplied
        await asyncio.sleep(0.2)


async def check_read_model(
    pool: asyncpg.Pool, store: PostgresEventStore, projection: Projection, *, max_lag: float
) -> ReadModelCheck:
    """Compare ``projection``'s active read model with a scratch rebuild of what it applied."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        tx = conn.transaction(isolation="repeatable_read")
        await tx.start()
        try:
            return await _compare(conn, store, projection, max_lag, started)
        finally:
            await tx.rollback()


async def _compare(
    conn: Connection, store: PostgresEventStore, projection: Projection, max_lag: float, started: float
) -> ReadModelCheck:
    name = projection.name
    active = await active_checkpoint(conn, name)
    if active is None:
        return ReadModelCheck(
            projection=name,
            version=None,
            position=0,
            applied=0,
            equal=True,
            tables=[],
            unapplied=0,
            seconds=0.0,
        )
    live_tables = projection.tables_at(active.version)
    live = {
        t: await table_digest(conn, live_tables[t], VOLATILE_COLUMNS.get(t, ())) for t in projection.tables
    }
    applied = await applied_event_ids(conn, name, active.version)
    parked = {p.event_id for p in await list_parked(conn, projection=name, include_resolved=True)}
    events, unapplied = await _applied_events(store, projection, applied, parked, active.position, max_lag)
    # Only now does this transaction write (and take a transaction id): the store's gap-safe
    # tail, read above on other connections, waits for running writers to pass.
    schema = f"memsaga_verify_{uuid.uuid4().hex[:12]}"
    await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    scratch = scratch_tables(projection, schema)
    await conn.execute(scratch_ddl(projection, scratch))
    with using_vault(store.vault):  # handlers open users' sealed blobs with it
        for start in range(0, len(events), BATCH):
            await apply_in_order(conn, projection, scratch, events[start : start + BATCH])
    digests = []
    for t in projection.tables:
        rows, digest = await table_digest(conn, scratch[t], VOLATILE_COLUMNS.get(t, ()))
        digests.append(
            TableDigest(
                table=t, live_rows=live[t][0], rebuilt_rows=rows, live_hash=live[t][1], rebuilt_hash=digest
            )
        )
    return ReadModelCheck(
        projection=name,
        version=active.version,
        position=active.position,
        applied=len(applied),
        equal=all(d.equal for d in digests),
        tables=digests,
        unapplied=unapplied,
        seconds=round(time.monotonic() - started, 3),
    )
