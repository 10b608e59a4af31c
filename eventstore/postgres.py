"""The PostgreSQL event store on asyncpg (schema in ``eventstore/migrations``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore.codec import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PreparedEvent,
    StoredEvent,
    expected_version_code,
    prepare_batch,
    resolve_duplicate,
    to_recorded,
)
from eventstore.envelope import ANY, AppendResult, Direction, ExpectedVersion, NewEvent, RecordedEvent
from eventstore.errors import WrongExpectedVersion
from eventstore.registry import SchemaRegistry
from eventstore.tail import GapGuard, SnapshotInfo
from eventstore.tracing import append_span

Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain or pooled connection: what ``append(conn=...)`` accepts."""

_COLUMNS = """event_id, stream_id, version, position, event_type, event_version, correlation_id,
    causation_id, user_id, occurred_at, recorded_at, payload::text AS payload, metadata::text AS metadata"""

_APPEND = (
    "SELECT outcome, stream_version, positions"
    " FROM memsaga.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
_BY_IDS = f"SELECT {_COLUMNS} FROM memsaga.events WHERE event_id = ANY($1::uuid[])"
_STREAM_FORWARD = (
    f"SELECT {_COLUMNS} FROM memsaga.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
)
_STREAM_BACKWARD = (
    f"SELECT {_COLUMNS} FROM memsaga.events WHERE stream_id = $1 AND version <= $2"
    " ORDER BY version DESC LIMIT $3"
)
_AFTER = f"SELECT {_COLUMNS} FROM memsaga.events WHERE position > $1 ORDER BY position LIMIT $2"
_SNAPSHOT = """SELECT pg_snapshot_xmin(s)::text AS xmin,
    (SELECT max(x)::text FROM pg_snapshot_xip(s) AS x) AS max_running FROM pg_current_snapshot() AS s"""
_CORRELATION = f"SELECT {_COLUMNS} FROM memsaga.events WHERE correlation_id = $1 ORDER BY position"
# UNION (not UNION ALL) ends the recursion even if a producer made an event its own cause.
_CAUSATION = f"""WITH RECURSIVE tree(event_id) AS (
        SELECT event_id FROM memsaga.events WHERE event_id = $1
        UNION
        SELECT e.event_id FROM memsaga.events e JOIN tree t ON e.causation_id = t.event_id::text)
    SELECT {_COLUMNS} FROM memsaga.events WHERE event_id IN (SELECT event_id FROM tree) ORDER BY position"""

# Unique violations that mean "another appender won a race": answered by calling again.
_RACE_CONSTRAINTS = frozenset({"events_event_id_key", "events_stream_version_key"})
_MAX_RACE_RETRIES = 5


def _stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        event_type=row["event_type"],
        event_version=row["event_version"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        user_id=row["user_id"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        payload=json.loads(row["payload"]),
        metadata=json.loads(row["metadata"]),
    )


def _append_args(stream_id: str, code: int, batch: Sequence[PreparedEvent]) -> list[Any]:
    return [
        stream_id,
        code,
        [e.event_id for e in batch],
        [e.event_type for e in batch],
        [e.event_version for e in batch],
        [e.correlation_id for e in batch],
        [e.causation_id for e in batch],
        [e.user_id for e in batch],
        [e.occurred_at for e in batch],
        [e.payload_json for e in batch],
        [e.metadata_json for e in batch],
    ]


class PostgresEventStore:
    """Event store on a PostgreSQL schema ``memsaga`` (apply it with ``memsaga migrate``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: SchemaRegistry,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.max_payload_bytes = max_payload_bytes

    async def append(
        self,
        stream_id: str,
        events: list[NewEvent],
        *,
        expected_version: ExpectedVersion = ANY,
        conn: Connection | None = None,
    ) -> AppendResult:
        """Append atomically in one round trip; idempotent by event id.

        Pass ``conn`` to append inside the caller's transaction (with its other writes).

        :raises WrongExpectedVersion: the stream is not at ``expected_version``.
        :raises EventIdConflict, PartialDuplicate: an id is stored with another body / batch.
        :raises UnknownEventType, InvalidPayload, PayloadTooLarge, InvalidEvent: bad input.
        """
        code = expected_version_code(expected_version)
        with append_span(stream_id, events) as trace_context:
            batch = prepare_batch(stream_id, events, self.registry, self.max_payload_bytes, trace_context)
            args = _append_args(stream_id, code, batch)
            if conn is not None:
                return await self._append_on(conn, stream_id, expected_version, batch, args)
            async with self.pool.acquire() as acquired:
                return await self._append_on(acquired, stream_id, expected_version, batch, args)

    async def _append_on(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: ExpectedVersion,
        batch: list[PreparedEvent],
        args: list[Any],
    ) -> AppendResult:
        for _ in range(_MAX_RACE_RETRIES):
            try:
                if conn.is_in_transaction():
                    async with (
                        conn.transaction()
                    ):  # a savepoint: a lost race must not abort the caller's work
                        row = await conn.fetchrow(_APPEND, *args)
                else:
                    row = await conn.fetchrow(_APPEND, *args)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name not in _RACE_CONSTRAINTS:
                    raise
                continue  # the winner has committed; the function's checks now see its rows
            assert row is not None
            outcome = row["outcome"]
            if outcome == "appended":
                positions: list[int] = row["positions"]
                last = row["stream_version"]
                return AppendResult(
                    stream_id=stream_id,
                    first_version=last - len(batch) + 1,
                    last_version=last,
                    positions=positions,
                )
            if outcome == "wrong_version":
                raise WrongExpectedVersion(stream_id, expected_version, row["stream_version"])
            stored = [_stored(r) for r in await conn.fetch(_BY_IDS, [e.event_id for e in batch])]
            return resolve_duplicate(stream_id, batch, stored)
        raise RuntimeError(f"append to {stream_id!r} kept losing races after {_MAX_RACE_RETRIES} attempts")

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        direction: Direction = Direction.FORWARD,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` (inclusive) in ``direction``, at most ``limit``."""
        if direction is Direction.FORWARD:
            rows = await self.pool.fetch(_STREAM_FORWARD, stream_id, from_version or 1, limit)
        else:
            start = from_version if from_version is not None else 2**62
            rows = await self.pool.fetch(_STREAM_BACKWARD, stream_id, start, limit)
        return [to_recorded(_stored(r), self.registry) for r in rows]

    async def read_all(
        self, *, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Every committed event after ``after_position`` in position order, gap-safe, in batches.

        Stops at the current head, or before the first position still held by a running
        transaction; use :meth:`tail` to keep following.
        """
        tail = self.tail(after_position=after_position)
        while batch := await tail.poll(batch_size):
            yield batch

    def tail(self, *, after_position: int = 0) -> EventTail:
        """A gap-safe follower of the global order, starting after ``after_position``."""
        return EventTail(self.pool, self.registry, after_position=after_position)

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event of one correlation id, in position order."""
        rows = await self.pool.fetch(_CORRELATION, correlation_id)
        return [to_recorded(_stored(r), self.registry) for r in rows]

    async def read_causation(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """An event and all its descendants by causation id, in position order."""
        rows = await self.pool.fetch(_CAUSATION, event_id)
        return [to_recorded(_stored(r), self.registry) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        value = await self.pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM memsaga.events WHERE stream_id = $1", stream_id
        )
        return int(value)

    async def head_position(self) -> int:
        """The highest committed position (0 when empty)."""
        value = await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM memsaga.events")
        return int(value)


class EventTail:
    """Follows the global order gap-safely (see :mod:`eventstore.tail`); ``position`` is the checkpoint."""

    def __init__(self, pool: asyncpg.Pool, registry: SchemaRegistry, *, after_position: int = 0) -> None:
        self.pool = pool
        self.registry = registry
        self.position = after_position
        self._guard = GapGuard()

    async def poll(self, limit: int = 1000) -> list[RecordedEvent]:
        """The next events that are safe to hand on (possibly none), advancing ``position``."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            snap = await conn.fetchrow(_SNAPSHOT)
            rows = await conn.fetch(_AFTER, self.position, limit)
        assert snap is not None
        snapshot = SnapshotInfo(
            xmin=int(snap["xmin"]),
            max_running=None if snap["max_running"] is None else int(snap["max_running"]),
        )
        admitted = self._guard.admit(self.position, [r["position"] for r in rows], snapshot)
        events = [to_recorded(_stored(r), self.registry) for r in rows[:admitted]]
        if events:
            self.position = events[-1].position
        return events

    @property
    def waiting_on_gap(self) -> bool:
        """Whether the tail is holding back behind a position still in flight."""
        return self._guard.waiting
