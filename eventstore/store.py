"""The event-store port: what every implementation offers (PostgreSQL, in-memory)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from eventstore.envelope import (
    ANY,
    AppendResult,
    Backlog,
    Direction,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)


class EventStore(Protocol):
    """Append-only event storage with optimistic concurrency per stream."""

    async def append(
        self, stream_id: str, events: list[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append events atomically; idempotent by event id.

        :raises WrongExpectedVersion: the stream is not at ``expected_version``.
        :raises EventIdConflict: an event id is stored with another body.
        :raises UnknownEventType, InvalidPayload, PayloadTooLarge, InvalidEvent: bad input.
        """
        ...

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        direction: Direction = Direction.FORWARD,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` (inclusive) in ``direction``."""
        ...

    def read_all(
        self, *, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Every committed event after ``after_position`` in position order, in batches."""
        ...

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event of one correlation id, in position order."""
        ...

    async def read_causation(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """An event and all its descendants by causation id, in position order."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        ...

    async def head_position(self) -> int:
        """The highest position stored (0 when empty)."""
        ...

    async def backlog(
        self,
        *,
        after_position: int,
        event_types: Sequence[str] | None = None,
        until_position: int | None = None,
    ) -> Backlog:
        """The events after ``after_position`` (only of ``event_types``, and only up to
        ``until_position``, when given): a reader's lag."""
        ...

    async def read_type(
        self, event_type: str, *, user_id: str | None = None, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Events of ``event_type`` (only ``user_id``'s when given) after ``after_position``, in
        position order, at most ``limit``: a scan of one type without reading the others."""
        ...

    async def find_events(
        self,
        event_type: str,
        *,
        payload_field: str,
        values: Sequence[str],
        user_id: str | None = None,
        unless_stream_has: str | None = None,
    ) -> list[RecordedEvent]:
        """Events of ``event_type`` whose stored payload's text field ``payload_field`` is one of
        ``values``, in position order: only ``user_id``'s when given, and none of a stream that
        holds an ``unless_stream_has`` event.

        :raises InvalidQuery: ``payload_field`` is not a lower-case identifier.
        """
        ...
