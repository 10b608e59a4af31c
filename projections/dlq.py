"""What an operator does with parked (poison) events: find one, retry it from the event store,
or drop it with a reason. The rows themselves are :mod:`projections.parked`'s.

Nothing here deletes anything: a retry marks the row *retried*, a drop marks it *dropped*
with the operator's reason, and the event itself always stays in ``memsaga.events``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg
from pydantic import BaseModel, ConfigDict

from eventstore import PostgresEventStore, RecordedEvent
from projections.base import Projection, find_projection
from projections.errors import (
    AmbiguousParkedEvent,
    ParkedEventNotFound,
    ParkedEventNotRetryable,
    ProjectionNotInitialized,
)
from projections.parked import ParkedEvent, mark_dropped, mark_retried, parked_rows, record_retry_failure
from projections.tracking import apply_in_savepoint
from projections.versions import (
    active_version,
    advance_checkpoint,
    lock_checkpoint,
    lock_shared,
    require_code_version,
)


class RetryResult(BaseModel):
    """What retrying one parked event came to: applied (or already applied), or failed again."""

    model_config = ConfigDict(frozen=True)

    projection: str
    event_id: uuid.UUID
    ok: bool
    applied: bool
    error: str | None


async def find_parked(pool: asyncpg.Pool, event_id: uuid.UUID, projection: str | None = None) -> ParkedEvent:
    """The parked row of ``event_id``.

    :raises ParkedEventNotFound: none matches.
    :raises AmbiguousParkedEvent: several projections parked it and none was named.
    """
    rows = await parked_rows(pool, event_id, projection)
    if not rows:
        raise ParkedEventNotFound(event_id, projection)
    if len(rows) > 1:
        raise AmbiguousParkedEvent(event_id, [r.projection for r in rows])
    return rows[0]


async def _read_event(store: PostgresEventStore, parked: ParkedEvent) -> RecordedEvent:
    if parked.stream_id is None or parked.stream_version is None:
        raise ParkedEventNotRetryable(parked.event_id)
    events = await store.read_stream(parked.stream_id, from_version=parked.stream_version, limit=1)
    if not events or events[0].event_id != parked.event_id:
        raise ParkedEventNotFound(parked.event_id, parked.projection)
    return events[0]


async def retry_parked(
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    projections: Mapping[str, Projection],
    event_id: uuid.UUID,
    *,
    projection: str | None = None,
) -> RetryResult:
    """Re-read a parked event from the store and apply it to the active read model.

    Success (or finding it applied already) marks the row *retried*; another failure keeps
    it parked with the new error.

    :raises ParkedEventNotFound, AmbiguousParkedEvent, ParkedEventNotRetryable: see the names.
    :raises ProjectionCodeMismatch: the active read model was built by other code.
    """
    parked = await find_parked(pool, event_id, projection)
    proj = find_projection(projections, parked.projection)
    event = await _read_event(store, parked)
    async with pool.acquire() as conn, conn.transaction():
        await lock_shared(conn, proj.name)
        active = await active_version(conn, proj.name)
        if active is None:
            raise ProjectionNotInitialized(proj.name)
        require_code_version(proj, active)
        await lock_checkpoint(conn, proj.name, active.version)
        result = await apply_in_savepoint(conn, proj, active.version, proj.tables_at(active.version), event)
        if result.error is None:
            await advance_checkpoint(conn, proj.name, active.version, event.position, int(result.applied))
            await mark_retried(conn, proj.name, event_id)
        else:
            await record_retry_failure(conn, proj.name, event_id, result.error)
    ok = result.error is None
    return RetryResult(
        projection=proj.name, event_id=event_id, ok=ok, applied=result.applied, error=result.error
    )


async def drop_parked(
    pool: asyncpg.Pool, event_id: uuid.UUID, reason: str, *, projection: str | None = None
) -> ParkedEvent:
    """Give up on a parked event, recording why (the event stays in the store).

    :raises ValueError: an empty reason.
    :raises ParkedEventNotFound, AmbiguousParkedEvent: see the names.
    """
    if not reason.strip():
        raise ValueError("a drop needs a reason (--reason): it is kept with the parked event")
    parked = await find_parked(pool, event_id, projection)
    dropped = await mark_dropped(pool, parked.projection, event_id, reason.strip())
    if dropped is None:
        raise ParkedEventNotFound(event_id, parked.projection)  # already retried or dropped
    return dropped
