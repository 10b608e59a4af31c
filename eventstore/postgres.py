"""The PostgreSQL event store on asyncpg (schema in ``eventstore/migrations``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore.codec import (
    AS_STORED,
    DEFAULT_MAX_PAYLOAD_BYTES,
    PreparedEvent,
    checked_payload_field,
    expected_version_code,
    prepare_batch,
    resolve_duplicate,
)
from eventstore.columns import POSITION, SELECT_LIST, WRITTEN, decode_row
from eventstore.encryption import BLIND
from eventstore.envelope import (
    ANY,
    AppendResult,
    Backlog,
    Direction,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)
from eventstore.errors import InvalidQuery, WrongExpectedVersion
from eventstore.pool import mark_session_clean
from eventstore.registry import SchemaRegistry
from eventstore.tail import GapGuard
from eventstore.tracing import append_span
from eventstore.vault import Vault

Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain or pooled connection: what ``append(conn=...)`` accepts."""

_COLUMNS = SELECT_LIST
# The append functions take the stream id, the expected-version code, then the written columns.
_PARAMS = ", ".join(f"${i}" for i in range(1, len(WRITTEN) + 3))
_APPEND = f"SELECT outcome, stream_version, positions FROM memsaga.append_events({_PARAMS})"
# One event (most appends): scalars in, one row out (eventstore/functions/append_event.sql).
_APPEND_ONE = (
    f"SELECT outcome, stream_version, ARRAY[event_position] AS positions FROM memsaga.append_event({_PARAMS})"
)
_BY_IDS = f"SELECT {_COLUMNS} FROM memsaga.events WHERE event_id = ANY($1::uuid[])"
_STREAM_FORWARD = (
    f"SELECT {_COLUMNS} FROM memsaga.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
)
_STREAM_BACKWARD = (
    f"SELECT {_COLUMNS} FROM memsaga.events WHERE stream_id = $1 AND version <= $2"
    " ORDER BY version DESC LIMIT $3"
)
# The tail's round trip: the rows after a position and, on each row, the xmin of the snapshot
# they were read in. One statement reads with one snapshot, and pg_current_snapshot() is that
# snapshot, so rows and xmin agree without a repeatable-read transaction around them.
_TAIL = f"""WITH snap AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
    SELECT {_COLUMNS}, snap.xmin
    FROM (SELECT * FROM memsaga.events WHERE position > $1 ORDER BY position LIMIT $2) AS e, snap
    ORDER BY e.position"""
# A gap's horizon (eventstore/tail.py): a transaction id assigned after the rows were read.
_HORIZON = "SELECT pg_current_xact_id()::text::bigint"
_CORRELATION = f"SELECT {_COLUMNS} FROM memsaga.events WHERE correlation_id = $1 ORDER BY position"
# UNION (not UNION ALL) ends the recursion even if a producer made an event its own cause.
_CAUSATION = f"""WITH RECURSIVE tree(event_id) AS (
        SELECT event_id FROM memsaga.events WHERE event_id = $1
        UNION
        SELECT e.event_id FROM memsaga.events e JOIN tree t ON e.causation_id = t.event_id::text)
    SELECT {_COLUMNS} FROM memsaga.events WHERE event_id IN (SELECT event_id FROM tree) ORDER BY position"""

# One event type after a position (by user when given; the user's events are found by the
# indexes led by user_id), filtered in PostgreSQL so that no other event is decoded.
_TYPE = f"""SELECT {_COLUMNS} FROM memsaga.events
    WHERE event_type = $1 AND position > $2 AND ($3::text IS NULL OR user_id = $3)
    ORDER BY position LIMIT $4"""

_HEAD = "SELECT coalesce(max(position), 0) FROM memsaga.events"
_BACKLOG = """SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at))::float8, 0)
    FROM memsaga.events WHERE position > $1 AND ($3::bigint IS NULL OR position <= $3)
      AND ($2::text[] IS NULL OR event_type = ANY($2))"""


@functools.cache
def _find_sql(field: str, by_user: bool, unless: bool, blind: bool = False) -> str:
    """The statement of :meth:`PostgresEventStore.find_events`: ``field`` spelled out, so that an
    expression index on it applies (sagas/migrations/0001_memory_dedup_index.sql); only the
    filters asked for, so that a generic plan need not allow for the others. ``blind``: the
    field is sealed, and also matched by its blind index (the last parameter)."""
    sql = f"SELECT {_COLUMNS} FROM memsaga.events c WHERE c.event_type = $1"
    if blind:
        last = 3 + by_user + unless
        sql += f" AND (c.payload->>'{field}' = ANY($2) OR c.payload->'{field}'->>'{BLIND}' = ANY(${last}))"
    else:
        sql += f" AND c.payload->>'{field}' = ANY($2)"
    if by_user:
        sql += " AND c.user_id = $3"
    if unless:
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM memsaga.events r"
            f" WHERE r.stream_id = c.stream_id AND r.event_type = ${4 if by_user else 3})"
        )
    return sql + " ORDER BY c.position"


# Unique violations that mean "another appender won a race": answered by calling again.
_RACE_CONSTRAINTS = frozenset({"events_event_id_key", "events_stream_version_key"})
_MAX_RACE_RETRIES = 5


def _append_call(stream_id: str, code: int, batch: Sequence[PreparedEvent]) -> tuple[str, list[Any]]:
    """The statement and arguments of one append: scalars for one event, arrays for more (a
    :class:`PreparedEvent` is its written columns, in order)."""
    if len(batch) == 1:
        return _APPEND_ONE, [stream_id, code, *batch[0]]
    return _APPEND, [stream_id, code, *map(list, zip(*batch, strict=True))]


class PostgresEventStore:
    """Event store on a PostgreSQL schema ``memsaga`` (apply it with ``memsaga migrate``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: SchemaRegistry,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        vault: Vault | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.max_payload_bytes = max_payload_bytes
        self.vault = vault
        """Seals personal fields at append and opens them on read; None keeps them plain."""

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
            seal = None if self.vault is None else await self.vault.sealer(events)
            batch = prepare_batch(
                stream_id, events, self.registry, self.max_payload_bytes, trace_context, seal
            )
            query, args = _append_call(stream_id, code, batch)
            if conn is not None:
                return await self._append_on(conn, stream_id, expected_version, batch, query, args)
            async with self.pool.acquire() as acquired:
                result = await self._append_on(acquired, stream_id, expected_version, batch, query, args)
                # An append leaves no session state behind: spare the pool its reset round trip.
                mark_session_clean(acquired)
                return result

    async def _append_on(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: ExpectedVersion,
        batch: list[PreparedEvent],
        query: str,
        args: list[Any],
    ) -> AppendResult:
        for _ in range(_MAX_RACE_RETRIES):
            try:
                if conn.is_in_transaction():
                    async with (
                        conn.transaction()
                    ):  # a savepoint: a lost race must not abort the caller's work
                        row = await conn.fetchrow(query, *args)
                else:
                    row = await conn.fetchrow(query, *args)
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
            rows = await conn.fetch(_BY_IDS, [e.event_id for e in batch])
            stored = [decode_row(r, AS_STORED) for r in rows]
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
        return await self._decode(rows)

    async def read_all(
        self, *, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Every committed event after ``after_position`` in position order, gap-safe, in batches.

        Stops at the current head, or before the first position still held by a running
        transaction; use :meth:`tail` to keep following.
        """
        tail = self.tail(after_position=after_position)
        rows = await tail.fetch(batch_size)
        while rows:
            # Read ahead: PostgreSQL sends the next batch while this one is decoded and used.
            ahead = asyncio.ensure_future(tail.fetch(batch_size))
            try:
                yield await self._decode(rows)
                rows = await ahead
            finally:
                if not ahead.done():
                    ahead.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ahead

    def tail(self, *, after_position: int = 0) -> EventTail:
        """A gap-safe follower of the global order, starting after ``after_position``; its events
        are raw, personal fields still sealed (:meth:`open_events`)."""
        return EventTail(self.pool, self.registry, after_position=after_position)

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event of one correlation id, in position order."""
        rows = await self.pool.fetch(_CORRELATION, correlation_id)
        return await self._decode(rows)

    async def read_causation(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """An event and all its descendants by causation id, in position order."""
        rows = await self.pool.fetch(_CAUSATION, event_id)
        return await self._decode(rows)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        value = await self.pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM memsaga.events WHERE stream_id = $1", stream_id
        )
        return int(value)

    async def head_position(self) -> int:
        """The highest committed position (0 when empty)."""
        value = await self.pool.fetchval(_HEAD)
        return int(value)

    async def backlog(
        self,
        *,
        after_position: int,
        event_types: Sequence[str] | None = None,
        until_position: int | None = None,
    ) -> Backlog:
        """See :meth:`eventstore.store.EventStore.backlog` (the clock: the database's ``now()``)."""
        types = None if event_types is None else list(event_types)
        row = await self.pool.fetchrow(_BACKLOG, after_position, types, until_position)
        assert row is not None
        return Backlog(events=row[0], seconds=row[1])

    async def read_type(
        self, event_type: str, *, user_id: str | None = None, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.read_type`."""
        rows = await self.pool.fetch(_TYPE, event_type, after_position, user_id, limit)
        return await self._decode(rows)

    async def find_events(
        self,
        event_type: str,
        *,
        payload_field: str,
        values: Sequence[str],
        user_id: str | None = None,
        unless_stream_has: str | None = None,
    ) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.find_events`.

        :raises InvalidQuery: ``payload_field`` is not a lower-case identifier.
        """
        field = checked_payload_field(payload_field)
        args: list[Any] = [a for a in (user_id, unless_stream_has) if a is not None]
        blind = self.vault is not None and self.vault.indexed(event_type, field)
        if blind and self.vault is not None:
            if user_id is None:
                raise InvalidQuery(f"{event_type}.{field} is personal: finding events by it needs a user_id")
            args.append(await self.vault.blind_indexes(user_id, values))
        sql = _find_sql(field, user_id is not None, unless_stream_has is not None, blind)
        rows = await self.pool.fetch(sql, event_type, list(values), *args)
        return await self._decode(rows)

    async def open_events(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """Raw events (from :meth:`tail`, or JetStream) with their personal fields opened; as
        they are without a vault."""
        return events if self.vault is None else await self.vault.open_events(events)

    async def _decode(self, rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
        """Rows this store read, decoded and (with a vault) opened."""
        if self.vault is None:
            registry = self.registry
            return [decode_row(r, registry) for r in rows]
        return await self.vault.decode_rows(rows)


class EventTail:
    """Follows the global order gap-safely (see :mod:`eventstore.tail`); ``position`` is the checkpoint."""

    def __init__(self, pool: asyncpg.Pool, registry: SchemaRegistry, *, after_position: int = 0) -> None:
        self.pool = pool
        self.registry = registry
        self.position = after_position
        self._guard = GapGuard()

    async def poll(self, limit: int = 1000) -> list[RecordedEvent]:
        """The next events that are safe to hand on (possibly none), advancing ``position``."""
        return self.decode(await self.fetch(limit))

    async def fetch(self, limit: int = 1000) -> list[asyncpg.Record]:
        """The next rows that are safe to hand on, undecoded, advancing ``position``.

        One round trip; two when it stops at a gap no fence covers yet (the horizon, see
        :mod:`eventstore.tail`). Split from :meth:`decode` so that a reader can fetch the
        next batch while it decodes this one.
        """
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_TAIL, self.position, limit)
            admission = None
            if rows:
                admission = self._guard.admit(self.position, [r[POSITION] for r in rows], rows[-1]["xmin"])
                if admission.fence_below is not None:
                    # Its own statement, so that the id is assigned after the rows' snapshot was taken
                    # (autocommit: each statement its own transaction and snapshot).
                    self._guard.fence(admission.fence_below, await conn.fetchval(_HORIZON))
            mark_session_clean(conn)  # two reads leave no session state: spare the reset round trip
        if admission is None:
            return rows
        if admission.count:
            self.position = rows[admission.count - 1][POSITION]
        return rows[: admission.count]

    def decode(self, rows: list[asyncpg.Record]) -> list[RecordedEvent]:
        """Envelopes of rows from :meth:`fetch`, upcast to the newest known schemas."""
        registry = self.registry
        return [decode_row(r, registry) for r in rows]

    @property
    def waiting_on_gap(self) -> bool:
        """Whether the tail is holding back behind a position still in flight."""
        return self._guard.waiting
