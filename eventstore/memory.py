"""An in-memory event store with the same contract as the PostgreSQL one, for fast tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from eventstore.codec import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PreparedEvent,
    as_stored,
    checked_payload_field,
    expected_version_code,
    prepare_batch,
    resolve_duplicate,
    upcast,
    version_matches,
)
from eventstore.envelope import (
    ANY,
    AppendResult,
    Backlog,
    Direction,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)
from eventstore.errors import WrongExpectedVersion
from eventstore.registry import SchemaRegistry
from eventstore.tracing import append_span


class InMemoryEventStore:
    """Keeps events as stored (not upcast) in lists; ``clock`` stamps ``recorded_at`` (injectable
    for determinism)."""

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.max_payload_bytes = max_payload_bytes
        self._clock = clock
        self._all: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._lock = asyncio.Lock()

    async def append(
        self, stream_id: str, events: list[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """See :meth:`eventstore.store.EventStore.append`."""
        code = expected_version_code(expected_version)
        with append_span(stream_id, events) as trace_context:
            batch = prepare_batch(stream_id, events, self.registry, self.max_payload_bytes, trace_context)
            return await self._append(stream_id, batch, code, expected_version)

    async def _append(
        self, stream_id: str, batch: list[PreparedEvent], code: int, expected_version: ExpectedVersion
    ) -> AppendResult:
        async with self._lock:
            stored = [self._by_id[e.event_id] for e in batch if e.event_id in self._by_id]
            if stored:
                return resolve_duplicate(stream_id, batch, stored)
            stream = self._streams.get(stream_id, [])
            current = len(stream)
            if not version_matches(code, current):
                raise WrongExpectedVersion(stream_id, expected_version, current)
            now = self._clock()
            new = [
                as_stored(
                    e, stream_id=stream_id, version=current + i, position=len(self._all) + i, recorded_at=now
                )
                for i, e in enumerate(batch, start=1)
            ]
            self._all.extend(new)
            self._streams.setdefault(stream_id, []).extend(new)
            self._by_id.update((s.event_id, s) for s in new)
        return AppendResult(
            stream_id=stream_id,
            first_version=new[0].version,
            last_version=new[-1].version,
            positions=[s.position for s in new],
        )

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        direction: Direction = Direction.FORWARD,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.read_stream`."""
        events = self._streams.get(stream_id, [])
        if direction is Direction.FORWARD:
            start = from_version or 1
            selected = [e for e in events if e.version >= start]
        else:
            end = from_version if from_version is not None else len(events)
            selected = [e for e in reversed(events) if e.version <= end]
        if limit is not None:
            selected = selected[:limit]
        return [upcast(e, self.registry) for e in selected]

    async def read_all(
        self, *, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        """See :meth:`eventstore.store.EventStore.read_all`."""
        position = after_position
        while True:
            batch = self._all[position : position + batch_size]
            if not batch:
                return
            position = batch[-1].position
            yield [upcast(e, self.registry) for e in batch]

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.read_correlation`."""
        return [upcast(e, self.registry) for e in self._all if e.correlation_id == correlation_id]

    async def read_causation(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.read_causation`."""
        wanted = {str(event_id)}
        found: list[RecordedEvent] = []
        for event in self._all:  # causes always precede their effects in position order
            if event.event_id == event_id or event.causation_id in wanted:
                wanted.add(str(event.event_id))
                found.append(event)
        return [upcast(e, self.registry) for e in found]

    async def stream_version(self, stream_id: str) -> int:
        """See :meth:`eventstore.store.EventStore.stream_version`."""
        return len(self._streams.get(stream_id, []))

    async def head_position(self) -> int:
        """See :meth:`eventstore.store.EventStore.head_position`."""
        return len(self._all)

    async def backlog(
        self,
        *,
        after_position: int,
        event_types: Sequence[str] | None = None,
        until_position: int | None = None,
    ) -> Backlog:
        """See :meth:`eventstore.store.EventStore.backlog` (the clock: the store's ``clock``)."""
        after = self._all[after_position:until_position]
        if event_types is not None:
            after = [e for e in after if e.event_type in event_types]
        if not after:
            return Backlog(events=0, seconds=0.0)
        oldest = min(e.recorded_at for e in after)
        return Backlog(events=len(after), seconds=(self._clock() - oldest).total_seconds())

    async def read_type(
        self, event_type: str, *, user_id: str | None = None, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.read_type`."""
        found = [
            e
            for e in self._all[after_position:]
            if e.event_type == event_type and (user_id is None or e.user_id == user_id)
        ]
        return [upcast(e, self.registry) for e in found[:limit]]

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
        field, wanted = checked_payload_field(payload_field), set(values)
        excluded = {e.stream_id for e in self._all if e.event_type == unless_stream_has}
        return [
            upcast(e, self.registry)
            for e in self._all
            if e.event_type == event_type
            and (user_id is None or e.user_id == user_id)
            and e.stream_id not in excluded
            and isinstance(text := e.payload.get(field), str)
            and text in wanted
        ]
