"""Bookkeeping shared by the runner, the rebuild and the DLQ.

* Which read-model version is active (``memsaga.projections``) and each version's
  checkpoint (``memsaga.projection_versions``).
* Which events a version has applied (``memsaga.projection_applied``): written in the same
  transaction as the handler's changes, so an event is applied once however often it comes.
* The handover lock: appliers of the live version hold it shared for their transaction; the
  rebuild holds it exclusively while it catches up and switches the active version. So no
  live transaction straddles a switch, and every one after it writes to the new version.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import TRANSIENT_ERRORS, Projection, Tables
from projections.errors import ProjectionCodeMismatch

_LOCK = "SELECT {fn}(hashtextextended('memsaga.projection:' || $1::text, 0))"


async def lock_shared(conn: Connection, name: str) -> None:
    """Hold the projection's handover lock shared until the transaction ends (live appliers)."""
    await conn.execute(_LOCK.format(fn="pg_advisory_xact_lock_shared"), name)


async def lock_exclusive(conn: Connection, name: str) -> None:
    """Hold the projection's handover lock exclusively until the transaction ends (the switch)."""
    await conn.execute(_LOCK.format(fn="pg_advisory_xact_lock"), name)


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    """The read-model version readers and the live runner use."""

    version: int
    code_version: int


async def active_version(conn: Connection, name: str) -> ActiveVersion | None:
    """The active version of a projection, or None before its first build."""
    row = await conn.fetchrow(
        """SELECT p.active_version, v.code_version FROM memsaga.projections p
           JOIN memsaga.projection_versions v ON v.name = p.name AND v.version = p.active_version
           WHERE p.name = $1""",
        name,
    )
    return None if row is None else ActiveVersion(row["active_version"], row["code_version"])


def require_code_version(projection: Projection, active: ActiveVersion) -> None:
    """:raises ProjectionCodeMismatch: the active version was built by other handler code."""
    if active.code_version != projection.version:
        raise ProjectionCodeMismatch(projection.name, active.code_version, projection.version)


async def create_version(conn: Connection, projection: Projection, version: int) -> None:
    """Register ``version`` as building and create its tables (one transaction, the caller's)."""
    await conn.execute(
        """INSERT INTO memsaga.projection_versions (name, version, code_version, state)
           VALUES ($1, $2, $3, 'building')""",
        projection.name,
        version,
        projection.version,
    )
    await conn.execute(projection.ddl_at(version))
    await conn.execute(
        "UPDATE memsaga.projections SET building_version = $2, updated_at = now() WHERE name = $1",
        projection.name,
        version,
    )


async def activate(conn: Connection, projection: Projection, version: int) -> None:
    """Make ``version`` the active one: registry row, version states and reader views, atomically."""
    await conn.execute(
        """UPDATE memsaga.projection_versions SET state = 'retired', retired_at = now(), updated_at = now()
           WHERE name = $1 AND state = 'active' AND version <> $2""",
        projection.name,
        version,
    )
    await conn.execute(
        """UPDATE memsaga.projection_versions SET state = 'active', activated_at = now(), updated_at = now()
           WHERE name = $1 AND version = $2""",
        projection.name,
        version,
    )
    await conn.execute(
        """INSERT INTO memsaga.projections (name, active_version) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET active_version = EXCLUDED.active_version,
               building_version = NULL, updated_at = now()""",
        projection.name,
        version,
    )
    physical = projection.tables_at(version)
    for logical, view in projection.views().items():
        # DROP + CREATE rather than CREATE OR REPLACE: a new code version may change columns.
        await conn.execute(f"DROP VIEW IF EXISTS {view}")
        await conn.execute(f"CREATE VIEW {view} AS SELECT * FROM {physical[logical]}")


async def apply_event(
    conn: Connection, projection: Projection, version: int, tables: Tables, event: RecordedEvent
) -> bool:
    """Apply one event to ``version`` unless it has no handler or was applied already; whether it ran."""
    handler = projection.handlers.get(event.event_type)
    if handler is None:
        return False
    first_time = await conn.fetchval(
        """INSERT INTO memsaga.projection_applied (name, version, event_id, position) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""",
        projection.name,
        version,
        event.event_id,
        event.position,
    )
    if not first_time:
        return False
    await handler(conn, tables, event)
    return True


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event came to."""

    applied: bool  # False: a duplicate, or a type without handler, or a failure
    error: str | None = None


async def apply_in_savepoint(
    conn: Connection, projection: Projection, version: int, tables: Tables, event: RecordedEvent
) -> Applied:
    """Apply one event inside a savepoint: a handler's failure undoes only its own writes.

    :raises: infrastructure errors (:data:`TRANSIENT_ERRORS`): the caller retries the batch.
    """
    try:
        async with conn.transaction():
            return Applied(await apply_event(conn, projection, version, tables, event))
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        return Applied(False, describe_error(exc))


_APPLIED_BULK = """INSERT INTO memsaga.projection_applied (name, version, event_id, position)
    SELECT $1, $2, unnest($3::uuid[]), unnest($4::bigint[])
    ON CONFLICT DO NOTHING RETURNING event_id"""

Around = Callable[[RecordedEvent], AbstractContextManager[object]]
"""Wraps the handling of one event (the runner's handling span)."""


async def apply_batch(
    conn: Connection,
    projection: Projection,
    version: int,
    tables: Tables,
    events: Sequence[RecordedEvent],
    *,
    around: Around | None = None,
) -> list[Applied]:
    """Apply ``events`` in one savepoint: what each came to, in order.

    Events without a handler cost nothing. The others are recorded in one statement and
    those applied for the first time (the first occurrence of an id) run their handler,
    inside ``around(event)`` if given; a run of consecutive events of one type goes to the
    type's batch handler, when the projection has one, in one call. When a handler fails,
    the savepoint is undone and the batch redone one savepoint per event, so only the
    failing events carry an error.

    :raises: infrastructure errors (:data:`TRANSIENT_ERRORS`): the caller retries the batch.
    """
    results = [Applied(False)] * len(events)
    handled = [i for i, event in enumerate(events) if event.event_type in projection.handlers]
    if not handled:
        return results
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                _APPLIED_BULK,
                projection.name,
                version,
                [events[i].event_id for i in handled],
                [events[i].position for i in handled],
            )
            first_time = {row[0] for row in rows}
            todo: list[int] = []
            for i in handled:
                if events[i].event_id in first_time:
                    first_time.discard(events[i].event_id)  # a later duplicate in the batch is skipped
                    todo.append(i)
            for run in _runs(todo, events):
                await _apply_run(conn, projection, tables, [events[i] for i in run], around)
                for i in run:
                    results[i] = Applied(True)
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        wrap = around or _unwrapped
        for i in handled:
            with wrap(events[i]):
                results[i] = await apply_in_savepoint(conn, projection, version, tables, events[i])
    return results


def _unwrapped(event: RecordedEvent) -> AbstractContextManager[object]:
    return nullcontext()


def _runs(indexes: list[int], events: Sequence[RecordedEvent]) -> Iterator[list[int]]:
    """Consecutive stretches of ``indexes`` whose events have one type."""
    run: list[int] = []
    for i in indexes:
        if run and events[run[-1]].event_type != events[i].event_type:
            yield run
            run = []
        run.append(i)
    if run:
        yield run


async def _apply_run(
    conn: Connection,
    projection: Projection,
    tables: Tables,
    events: list[RecordedEvent],
    around: Around | None,
) -> None:
    """Apply events of one type in order: through its batch handler when it has one."""
    wrap = around or _unwrapped
    batch_handler = projection.batch_handlers.get(events[0].event_type)
    if batch_handler is not None and len(events) > 1:
        with ExitStack() as spans:
            for event in events:
                spans.enter_context(wrap(event))
            await batch_handler(conn, tables, events)
        return
    handler = projection.handlers[events[0].event_type]
    for event in events:
        with wrap(event):
            await handler(conn, tables, event)


def describe_error(exc: BaseException) -> str:
    """The error's last line first, then the innermost frames (kept in the DLQ)."""
    frames = "".join(traceback.format_exception(exc, limit=-4)).rstrip()
    return f"{type(exc).__name__}: {exc}\n{frames}"


async def lock_checkpoint(conn: Connection, name: str, version: int) -> None:
    """Lock the version's checkpoint row until the transaction ends.

    Appliers of one version take it first, so their transactions run one after another:
    they cannot deadlock on read-model rows, and the checkpoint only moves forward.
    """
    await conn.execute(
        "SELECT 1 FROM memsaga.projection_versions WHERE name = $1 AND version = $2 FOR UPDATE", name, version
    )


async def advance_checkpoint(conn: Connection, name: str, version: int, position: int, applied: int) -> None:
    """Record progress of ``version``: highest position seen and events newly applied."""
    await conn.execute(
        """UPDATE memsaga.projection_versions
           SET position = greatest(position, $3), applied = applied + $4, updated_at = now()
           WHERE name = $1 AND version = $2""",
        name,
        version,
        position,
        applied,
    )


async def park(
    conn: Connection,
    name: str,
    version: int,
    event_id: object,
    event: RecordedEvent | None,
    error: str,
    deliveries: int,
) -> None:
    """Park a poison event with its error (a dropped one stays dropped)."""
    await conn.execute(
        """INSERT INTO memsaga.projection_parked
               (name, event_id, version, position, stream_id, stream_version, event_type, error, deliveries)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (name, event_id) DO UPDATE SET
               version = EXCLUDED.version, error = EXCLUDED.error, deliveries = EXCLUDED.deliveries,
               status = CASE WHEN projection_parked.status = 'dropped' THEN 'dropped' ELSE 'parked' END,
               parked_at = now(),
               resolved_at = CASE WHEN projection_parked.status = 'dropped'
                                  THEN projection_parked.resolved_at END""",
        name,
        event_id,
        version,
        None if event is None else event.position,
        None if event is None else event.stream_id,
        None if event is None else event.version,
        None if event is None else event.event_type,
        error,
        deliveries,
    )
