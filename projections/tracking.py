"""Owner of ``memsaga.projection_applied``: applying events to a read-model version exactly once.

Which events a version has applied is written in the same transaction as the handler's
changes, so an event is applied once however often it comes. The version registry and its
checkpoints are :mod:`projections.versions`'s; parked events are :mod:`projections.parked`'s.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import TRANSIENT_ERRORS, Executor, Projection, Tables
from projections.sealed import erased


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


class BatchFailed(Exception):
    """A handler failed in a batch applied without a savepoint of its own: the caller's
    transaction is aborted; redo the batch in a new one with ``savepoint=True``."""


async def apply_batch(
    conn: Connection,
    projection: Projection,
    version: int,
    tables: Tables,
    events: Sequence[RecordedEvent],
    *,
    around: Around | None = None,
    savepoint: bool = True,
) -> list[Applied]:
    """Apply ``events`` in one savepoint: what each came to, in order.

    Events without a handler cost nothing. The others are recorded in one statement and
    those applied for the first time (the first occurrence of an id) run their handler,
    inside ``around(event)`` if given; a run of consecutive events of one type goes to the
    type's batch handler, when the projection has one, in one call. When a handler fails,
    the savepoint is undone and the batch redone one savepoint per event, so only the
    failing events carry an error.

    With ``savepoint=False`` the batch runs straight in the caller's transaction (two round
    trips fewer) and a failing handler raises :class:`BatchFailed` instead: for a caller that
    can redo the whole transaction, as the runner can.

    :raises: infrastructure errors (:data:`TRANSIENT_ERRORS`): the caller retries the batch.
    :raises BatchFailed: a handler failed and ``savepoint`` is False.
    """
    results = [Applied(False)] * len(events)
    handled = [
        i for i, event in enumerate(events) if event.event_type in projection.handlers and not erased(event)
    ]
    if not handled:
        return results
    try:
        async with conn.transaction() if savepoint else nullcontext():
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
            for run in _runs(todo, events, projection):
                await _apply_run(conn, projection, tables, [events[i] for i in run], around)
                for i in run:
                    results[i] = Applied(True)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        if not savepoint:
            raise BatchFailed(describe_error(exc)) from exc
        wrap = around or _unwrapped
        for i in handled:
            with wrap(events[i]):
                results[i] = await apply_in_savepoint(conn, projection, version, tables, events[i])
    return results


def _unwrapped(event: RecordedEvent) -> AbstractContextManager[object]:
    return nullcontext()


def _runs(indexes: list[int], events: Sequence[RecordedEvent], projection: Projection) -> Iterator[list[int]]:
    """Consecutive stretches of ``indexes`` that one call can apply: events of one batch handler
    (which may serve several types, e.g. every change of a memory), else of one type."""

    def key(i: int) -> object:
        event_type = events[i].event_type
        return projection.batch_handlers.get(event_type) or event_type

    run: list[int] = []
    for i in indexes:
        if run and key(run[-1]) != key(i):
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
    """Apply a run in order: through its batch handler when it has one (the run's events all
    have it), else one by one."""
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


_APPLIED_BY_ACTIVE = """SELECT a.event_id, a.name
    FROM memsaga.projection_applied a
    JOIN memsaga.projections p ON p.name = a.name AND p.active_version = a.version
    WHERE a.event_id = ANY($1::uuid[])"""


async def projections_that_applied(
    db: Executor, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """Which projections (their active read-model versions) have applied each of ``event_ids``.

    Empty when the projections' schema is not migrated: then nothing has applied anything.
    """
    if await db.fetchval("SELECT to_regclass('memsaga.projection_applied') IS NULL"):
        return {}
    applied: dict[uuid.UUID, list[str]] = {}
    for row in await db.fetch(_APPLIED_BY_ACTIVE, list(event_ids)):
        applied.setdefault(row["event_id"], []).append(row["name"])
    return applied


async def applied_event_ids(db: Executor, name: str, version: int) -> set[uuid.UUID]:
    """Every event read-model ``version`` of ``name`` has applied (``memsaga verify`` rebuilds from them)."""
    rows = await db.fetch(
        "SELECT event_id FROM memsaga.projection_applied WHERE name = $1 AND version = $2", name, version
    )
    return {row[0] for row in rows}
