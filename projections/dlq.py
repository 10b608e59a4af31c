"""Parked (poison) events: list them, retry them from the event store, or drop them with a reason.

Nothing here deletes anything: a retry marks the row *retried*, a drop marks it *dropped*
with the operator's reason, and the event itself always stays in ``memsaga.events``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

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
from projections.tracking import (
    active_version,
    advance_checkpoint,
    apply_in_savepoint,
    lock_checkpoint,
    lock_shared,
    require_code_version,
)

_COLUMNS = """name AS projection, event_id, version, position, stream_id, stream_version, event_type, error,
    deliveries, retries, status, drop_reason, parked_at, resolved_at"""


class ParkedEvent(BaseModel):
    """One parked event of one projection."""

    model_config = ConfigDict(frozen=True)

    projection: str
    event_id: uuid.UUID
    version: int
    position: int | None
    stream_id: str | None
    stream_version: int | None
    event_type: str | None
    error: str
    deliveries: int
    retries: int
    status: str
    drop_reason: str | None
    parked_at: datetime
    resolved_at: datetime | None

    @property
    def error_line(self) -> str:
        """The first line of the error (the exception and its message)."""
        return self.error.split("\n", 1)[0]


class RetryResult(BaseModel):
    """What retrying one parked event came to: applied (or already applied), or failed again."""

    model_config = ConfigDict(frozen=True)

    projection: str
    event_id: uuid.UUID
    ok: bool
    applied: bool
    error: str | None


async def list_parked(
    pool: asyncpg.Pool, *, projection: str | None = None, include_resolved: bool = False
) -> list[ParkedEvent]:
    """Parked events (oldest first); with ``include_resolved`` also retried and dropped ones."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM memsaga.projection_parked
            WHERE ($1::text IS NULL OR name = $1) AND ($2 OR status = 'parked')
            ORDER BY parked_at, name, event_id""",
        projection,
        include_resolved,
    )
    return [ParkedEvent(**dict(r)) for r in rows]


async def find_parked(pool: asyncpg.Pool, event_id: uuid.UUID, projection: str | None = None) -> ParkedEvent:
    """The parked row of ``event_id``.

    :raises ParkedEventNotFound: none matches.
    :raises AmbiguousParkedEvent: several projections parked it and none was named.
    """
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM memsaga.projection_parked
            WHERE event_id = $1 AND ($2::text IS NULL OR name = $2) ORDER BY name""",
        event_id,
        projection,
    )
    if not rows:
        raise ParkedEventNotFound(event_id, projection)
    if len(rows) > 1:
        raise AmbiguousParkedEvent(event_id, [r["projection"] for r in rows])
    return ParkedEvent(**dict(rows[0]))


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
            await conn.execute(
                """UPDATE memsaga.projection_parked SET status = 'retried', retries = retries + 1,
                       resolved_at = now() WHERE name = $1 AND event_id = $2""",
                proj.name,
                event_id,
            )
        else:
            await conn.execute(
                """UPDATE memsaga.projection_parked SET error = $3, retries = retries + 1
                   WHERE name = $1 AND event_id = $2""",
                proj.name,
                event_id,
                result.error,
            )
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
    row = await pool.fetchrow(
        f"""UPDATE memsaga.projection_parked SET status = 'dropped', drop_reason = $3, resolved_at = now()
            WHERE name = $1 AND event_id = $2 AND status = 'parked' RETURNING {_COLUMNS}""",
        parked.projection,
        event_id,
        reason.strip(),
    )
    if row is None:
        raise ParkedEventNotFound(event_id, parked.projection)  # already retried or dropped
    return ParkedEvent(**dict(row))
