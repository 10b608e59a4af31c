"""Rebuild a read model without downtime, from the event store (never from NATS).

1. Register the next version (``<table>_v<N+1>``) as *building* and create its tables; an
   interrupted build of the same code version is resumed from its checkpoint instead.
2. Follow the store's gap-safe tail from position 0, applying batches to the new tables in
   one transaction each (handler writes, applied-event rows and checkpoint together) while
   the next batch is read, and while the live version keeps serving readers and the runner
   keeps updating it.
3. Once caught up, take the projection's handover lock exclusively (the runner holds it
   shared for each of its transactions), apply whatever the live version has seen beyond
   the build's position, and switch the active version and the reader views in the same
   transaction. After it, the runner applies to the new version and skips what the build
   already applied (by event id), so each event lands in the new version exactly once.

The same build runs by itself (:func:`ensure_current`, called by the runner) when a runner's
code version is newer than the active version's, or when it asks for another partition count
(fixed per version): a projection versions itself. Code older than
the active version's never builds or writes (a downgrade is refused).

Old versions are kept (state *retired*); nothing is dropped implicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore import PostgresEventStore, RecordedEvent
from eventstore.postgres import Connection, EventTail
from projections.base import Projection
from projections.errors import ProjectionCodeMismatch, RebuildInProgress, RebuildStalled
from projections.extensions import create_extensions
from projections.parked import count_parked, park
from projections.sealed import using_vault
from projections.tracing import replay_span
from projections.tracking import apply_batch
from projections.versions import (
    ActiveVersion,
    activate,
    active_version,
    advance_checkpoint,
    building_version,
    checkpoint,
    create_version,
    latest_version,
    lock_exclusive,
    record_build_head,
    require_code_version,
    retire_version,
)

log = logging.getLogger(__name__)

# The switch waits this long for the runners' batches and readers of the views to finish.
SWITCH_LOCK_TIMEOUT = "10s"
# A build reports its progress (head and position) at most this often, in seconds.
REPORT_INTERVAL = 0.5
# Reads of the tail a build keeps ahead of the one it applies, and most reads per transaction.
READ_AHEAD = 4
MAX_READS_PER_TRANSACTION = 8
_SESSION_LOCK = "SELECT {fn}(hashtextextended('memsaga.rebuild:' || $1::text, 0))"


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    """Where a build stands: ``position`` of ``head`` events, ``applied`` so far."""

    projection: str
    version: int
    position: int
    head: int
    applied: int


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """A finished build: the version now active, the one it replaced, and what it took."""

    projection: str
    version: int
    previous_version: int | None
    position: int
    applied: int
    parked: int
    seconds: float


ProgressCallback = Callable[[RebuildProgress], None]


async def rebuild(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    projection: Projection,
    *,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
    wait: bool = False,
    catch_up_timeout: float = 30.0,
    partitions: int | None = None,
) -> RebuildResult:
    """Build a new version of ``projection``'s read model from the store and make it active,
    with ``partitions`` partitions (None: the active version's, else the projection's).

    :raises RebuildInProgress: another process rebuilds it (unless ``wait``).
    :raises ProjectionCodeMismatch: the active version was built by newer code (a downgrade).
    :raises RebuildStalled: the final catch-up could not reach the live position in time.
    """
    builder = _Builder(pool, store, projection, batch_size, progress, catch_up_timeout, partitions)
    async with _rebuild_lock(pool, projection.name, wait):
        return await builder.run()


async def ensure_built(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    projection: Projection,
    *,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
) -> ActiveVersion:
    """The active version, after building the first one from the store if there is none yet."""
    async with pool.acquire() as conn:
        active = await active_version(conn, projection.name)
    if active is not None:
        return active
    builder = _Builder(pool, store, projection, batch_size, progress, 30.0, None)
    async with _rebuild_lock(pool, projection.name, wait=True):
        async with pool.acquire() as conn:
            active = await active_version(conn, projection.name)
        if active is None:  # nobody built it while we waited for the lock
            await builder.run()
    async with pool.acquire() as conn:
        built = await active_version(conn, projection.name)
    assert built is not None
    return built


async def ensure_current(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    projection: Projection,
    *,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
    partitions: int | None = None,
) -> ActiveVersion:
    """The active version, built by ``projection``'s code with ``partitions`` partitions (None:
    whatever the active version has; the projection's own count for a first build): the first
    build, or a build beside an active version of older code or another partition count, which
    goes on serving (and being applied by the runners with that code) until this one has caught
    up and switched. An interrupted build of this code resumes from its checkpoint. Concurrent
    callers wait for one build.

    :raises ProjectionCodeMismatch: the active version was built by newer code (a downgrade).
    """
    name = projection.name

    def outdated(active: ActiveVersion | None) -> bool:
        if active is None or active.code_version < projection.version:
            return True
        same_code = active.code_version == projection.version
        return same_code and partitions is not None and active.partitions != partitions

    async with pool.acquire() as conn:
        active = await active_version(conn, name)
    if outdated(active):
        async with _rebuild_lock(pool, name, wait=True):
            async with pool.acquire() as conn:
                active = await active_version(conn, name)
            if outdated(active):  # nobody did it meanwhile
                if active is not None:
                    log.info(
                        "%s: active v%d was built by code version %d with %d partition(s), this is code"
                        " version %d with %s: building a new version beside it; the live one keeps"
                        " serving until the switch",
                        name,
                        active.version,
                        active.code_version,
                        active.partitions,
                        projection.version,
                        f"{partitions} partition(s)" if partitions else "its own partitions",
                    )
                builder = _Builder(pool, store, projection, batch_size, progress, 30.0, partitions)
                result = await builder.run()
                log.info(
                    "%s: v%d (code version %d) is active%s: %d events applied up to position %d in %.1fs",
                    name,
                    result.version,
                    projection.version,
                    f", replacing v{result.previous_version}" if result.previous_version else "",
                    result.applied,
                    result.position,
                    result.seconds,
                )
        async with pool.acquire() as conn:
            active = await active_version(conn, name)
    assert active is not None
    require_code_version(projection, active)
    return active


@dataclass(frozen=True, slots=True)
class _Batch:
    """One read of the tail: how many rows, the tail's position after them, and the decoded
    events among them the projection handles (the others are never decoded: a quarter of the
    store's events concern ``memories``, and decoding is most of a rebuild's client time)."""

    rows: int
    position: int
    events: list[RecordedEvent]


class _rebuild_lock:
    """A session advisory lock held on a dedicated pooled connection for the whole build."""

    def __init__(self, pool: asyncpg.Pool, name: str, wait: bool) -> None:
        self.pool = pool
        self.name = name
        self.wait = wait
        self._conn: PoolConnectionProxy[asyncpg.Record] | None = None

    async def __aenter__(self) -> None:
        conn = await self.pool.acquire()
        fn = "pg_advisory_lock" if self.wait else "pg_try_advisory_lock"
        try:
            got = await conn.fetchval(_SESSION_LOCK.format(fn=fn), self.name)
        except BaseException:
            await self.pool.release(conn)
            raise
        if got is False:
            await self.pool.release(conn)
            raise RebuildInProgress(self.name)
        self._conn = conn

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        try:
            await self._conn.execute(_SESSION_LOCK.format(fn="pg_advisory_unlock"), self.name)
        finally:
            await self.pool.release(self._conn)


class _Builder:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: PostgresEventStore,
        projection: Projection,
        batch_size: int,
        progress: ProgressCallback | None,
        catch_up_timeout: float,
        partitions: int | None,
    ) -> None:
        self.pool = pool
        self.partitions = partitions  # None: the live version's count, else the projection's
        self.store = store
        self.projection = projection
        self.batch_size = batch_size
        self.progress = progress
        self.catch_up_timeout = catch_up_timeout
        self.applied = 0  # in this run, for progress reports
        self._reported = -REPORT_INTERVAL  # monotonic time of the last progress report

    async def run(self) -> RebuildResult:
        started = time.monotonic()
        version, position = await self._prepare()
        await self._report(version, position, final=True)  # where it starts, and the head to reach
        tail = self.store.tail(after_position=position)
        while True:
            last = await self._follow(version, tail)
            try:
                switched, previous = await self._switch(version, tail)
            except asyncpg.LockNotAvailableError:
                # Readers or runners held on past the lock timeout: nothing switched; the
                # final transaction's work is undone, so resume from the committed checkpoint.
                log.warning("%s: switch to v%d timed out on a lock; retrying", self.projection.name, version)
                tail = self.store.tail(after_position=await self._checkpoint(version))
                await asyncio.sleep(0.5)
                continue
            if switched:
                return await self._result(version, previous, tail.position, time.monotonic() - started)
            if not last.rows:
                await asyncio.sleep(0.05)  # the tail waits on an in-flight position

    async def _read(self, tail: EventTail) -> _Batch:
        """The tail's next rows; only those of types the projection handles are decoded."""
        rows = await tail.fetch(self.batch_size)
        handled = self.projection.handlers
        return _Batch(len(rows), tail.position, tail.decode([r for r in rows if r["event_type"] in handled]))

    async def _follow(self, version: int, tail: EventTail) -> _Batch:
        """Apply the tail's events until a read is not full (caught up for now); returns that read.

        A reader task reads ahead (up to :data:`READ_AHEAD` reads) while the events are applied
        on one connection, in transactions of at least ``batch_size`` handled events (or of
        :data:`MAX_READS_PER_TRANSACTION` reads, or up to the last read), so that a projection
        that handles few of the store's events does not pay a transaction per read.
        """
        reads: asyncio.Queue[_Batch | BaseException] = asyncio.Queue(maxsize=READ_AHEAD)
        reader = asyncio.create_task(self._read_ahead(tail, reads))
        try:
            return await self._apply_reads(version, reads)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_ahead(self, tail: EventTail, reads: asyncio.Queue[_Batch | BaseException]) -> None:
        """Read until a read is not full; a failure is handed on (the applier raises it)."""
        try:
            while True:
                batch = await self._read(tail)
                await reads.put(batch)
                if batch.rows < self.batch_size:
                    return
        except Exception as exc:
            await reads.put(exc)

    async def _apply_reads(self, version: int, reads: asyncio.Queue[_Batch | BaseException]) -> _Batch:
        pending: list[_Batch] = []
        handled = 0
        async with self.pool.acquire() as conn:
            while True:
                batch = await reads.get()
                if isinstance(batch, BaseException):
                    raise batch
                pending.append(batch)
                handled += len(batch.events)
                last = batch.rows < self.batch_size
                if last or handled >= self.batch_size or len(pending) >= MAX_READS_PER_TRANSACTION:
                    if batch.rows or len(pending) > 1:  # an empty last read alone has nothing to record
                        events = [e for read in pending for e in read.events]
                        async with conn.transaction():
                            await self._apply(conn, version, events, batch.position)
                    await self._report(version, batch.position, final=last)
                    pending, handled = [], 0
                if last:
                    return batch

    async def _checkpoint(self, version: int) -> int:
        return (await checkpoint(self.pool, self.projection.name, version)).position

    async def _result(
        self, version: int, previous: int | None, position: int, seconds: float
    ) -> RebuildResult:
        name = self.projection.name
        applied = (await checkpoint(self.pool, name, version)).applied
        parked = await count_parked(self.pool, name, version)
        return RebuildResult(name, version, previous, position, applied, parked, seconds)

    async def _prepare(self) -> tuple[int, int]:
        """The version to build and the position to resume from."""
        name = self.projection.name
        code = self.projection.version
        async with self.pool.acquire() as conn, conn.transaction():
            live = await active_version(conn, name)
            if live is not None and live.code_version > code:
                raise ProjectionCodeMismatch(name, live.code_version, code)  # never build a downgrade
            await create_extensions(conn, self.projection)
            partitions = self.partitions or (live.partitions if live else self.projection.partitions)
            building = await building_version(conn, name)
            if building is not None and building.code_version > code:
                raise ProjectionCodeMismatch(name, building.code_version, code)  # nor abandon a newer build
            if building is not None and building.code_version == code and building.partitions == partitions:
                log.info(
                    "%s: resuming the build of v%d from position %d",
                    name,
                    building.version,
                    building.position,
                )
                return building.version, building.position
            if building is not None:  # a partial build by older code or another count: abandoned, kept
                await retire_version(conn, name, building.version)
            version = await latest_version(conn, name) + 1
            await create_version(conn, self.projection, version, partitions)
            log.info(
                "%s: building v%d (code version %d, %d partition(s)) from position 0",
                name,
                version,
                code,
                partitions,
            )
            return version, 0

    async def _apply(self, conn: Connection, version: int, events: list[RecordedEvent], at: int) -> None:
        """Apply ``events`` (those the projection handles) and move the checkpoint to ``at``."""
        tables = self.projection.tables_at(version)
        with replay_span(self.projection.name, events), using_vault(self.store.vault):
            results = await apply_batch(
                conn, self.projection, version, tables, await self.store.open_events(events)
            )
            for event, result in zip(events, results, strict=True):
                if result.error is not None:
                    await park(conn, self.projection.name, version, event.event_id, event, result.error, 1)
        applied = sum(r.applied for r in results)
        await advance_checkpoint(conn, self.projection.name, version, at, applied)
        self.applied += applied

    async def _report(self, version: int, position: int, *, final: bool) -> None:
        """Record the store's head and tell ``progress``: when ``final`` (the tail has caught up
        for now), otherwise at most every :data:`REPORT_INTERVAL` seconds."""
        now = time.monotonic()
        if not final and now - self._reported < REPORT_INTERVAL:
            return
        self._reported = now
        head = await self.store.head_position()
        await record_build_head(self.pool, self.projection.name, version, head)
        if self.progress is not None:
            self.progress(RebuildProgress(self.projection.name, version, position, head, self.applied))

    async def _switch(self, version: int, tail: EventTail) -> tuple[bool, int | None]:
        """Catch up with the live version under the handover lock and activate ``version``.

        Returns whether it switched (not when the live version is more than a batch ahead:
        the build goes on without holding the runners back) and the version it replaced.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'")
            await lock_exclusive(conn, self.projection.name)
            live = await active_version(conn, self.projection.name)
            target = 0
            if live is not None:
                target = (await checkpoint(conn, self.projection.name, live.version)).position
            if target - tail.position > self.batch_size:
                return False, None
            # Everything at or below the live position was published by the relay's gap-safe tail,
            # so it is final: this loop ends as soon as our own tail has seen the same.
            deadline = time.monotonic() + self.catch_up_timeout
            while tail.position < target:
                batch = await self._read(tail)
                if batch.rows:
                    await self._apply(conn, version, batch.events, batch.position)
                elif time.monotonic() > deadline:
                    raise RebuildStalled(self.projection.name, tail.position, target)
                else:
                    await asyncio.sleep(0.02)
            await activate(conn, self.projection, version)
        return True, None if live is None else live.version
