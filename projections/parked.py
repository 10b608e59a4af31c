"""Owner of ``memsaga.projection_parked``: every statement on parked (poison) events.

An event is parked with its error when it keeps failing, so the others flow. Nothing is
deleted: a retry marks the row *retried*, a drop marks it *dropped* with the operator's
reason, and the event itself always stays in ``memsaga.events``. The operator's actions on
these rows (retry from the store, drop) are in :mod:`projections.dlq`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import Executor

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


async def list_parked(
    db: Executor, *, projection: str | None = None, include_resolved: bool = False
) -> list[ParkedEvent]:
    """Parked events (oldest first); with ``include_resolved`` also retried and dropped ones."""
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM memsaga.projection_parked
            WHERE ($1::text IS NULL OR name = $1) AND ($2 OR status = 'parked')
            ORDER BY parked_at, name, event_id""",
        projection,
        include_resolved,
    )
    return [ParkedEvent(**dict(r)) for r in rows]


async def parked_rows(db: Executor, event_id: uuid.UUID, projection: str | None = None) -> list[ParkedEvent]:
    """Every row of ``event_id`` (one per projection that parked it), or only ``projection``'s."""
    rows = await db.fetch(
        f"""SELECT {_COLUMNS} FROM memsaga.projection_parked
            WHERE event_id = $1 AND ($2::text IS NULL OR name = $2) ORDER BY name""",
        event_id,
        projection,
    )
    return [ParkedEvent(**dict(r)) for r in rows]


async def count_parked(db: Executor, name: str, version: int | None = None) -> int:
    """How many events of ``name`` are parked now (only those of ``version`` when given)."""
    parked = await db.fetchval(
        """SELECT count(*) FROM memsaga.projection_parked
           WHERE name = $1 AND ($2::integer IS NULL OR version = $2) AND status = 'parked'""",
        name,
        version,
    )
    return int(parked)


async def mark_retried(conn: Connection, name: str, event_id: uuid.UUID) -> None:
    """A retry applied the event (or found it applied): the row is resolved."""
    await conn.execute(
        """UPDATE memsaga.projection_parked SET status = 'retried', retries = retries + 1,
               resolved_at = now() WHERE name = $1 AND event_id = $2""",
        name,
        event_id,
    )


async def record_retry_failure(conn: Connection, name: str, event_id: uuid.UUID, error: str) -> None:
    """A retry failed again: the row stays parked with the new error."""
    await conn.execute(
        """UPDATE memsaga.projection_parked SET error = $3, retries = retries + 1
           WHERE name = $1 AND event_id = $2""",
        name,
        event_id,
        error,
    )


async def mark_dropped(db: Executor, name: str, event_id: uuid.UUID, reason: str) -> ParkedEvent | None:
    """Drop a parked row with the operator's reason; None when it is not parked (any more)."""
    row = await db.fetchrow(
        f"""UPDATE memsaga.projection_parked SET status = 'dropped', drop_reason = $3, resolved_at = now()
            WHERE name = $1 AND event_id = $2 AND status = 'parked' RETURNING {_COLUMNS}""",
        name,
        event_id,
        reason,
    )
    return None if row is None else ParkedEvent(**dict(row))
