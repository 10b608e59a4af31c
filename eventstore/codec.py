"""Turning new events into the rows both stores keep, with the checks every append makes."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from eventstore.envelope import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamState
from eventstore.errors import EventIdConflict, InvalidEvent, PartialDuplicate, PayloadTooLarge
from eventstore.registry import SchemaRegistry

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
# How JSON writes a NUL character (which jsonb refuses): \u0000 after an even number of
# backslashes; after an odd number it is the text "\u0000" itself, which is fine.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dump_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept as is.

    :raises TypeError: a value JSON cannot hold, or an integer beyond 64 bits (which
        readers would get back as a float: events must replay exactly).
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def load_json(text: str | bytes) -> Any:
    """Parse JSON written by :func:`dump_json` (or by PostgreSQL's ``jsonb`` output)."""
    return orjson.loads(text)


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A validated event with its payload and metadata serialised once."""

    event_id: uuid.UUID
    event_type: str
    event_version: int
    correlation_id: str
    causation_id: str
    user_id: str | None
    occurred_at: datetime
    payload_json: str
    metadata_json: str

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a reader will see it (parsed from its JSON; the duplicate check needs it)."""
        value: dict[str, Any] = load_json(self.payload_json)
        return value


# What must match when the same event id is appended again (metadata may differ: a retry has
# a new trace span).
BODY_FIELDS = (
    "event_type",
    "event_version",
    "correlation_id",
    "causation_id",
    "user_id",
    "occurred_at",
    "payload",
)


def prepare_batch(
    stream_id: str,
    events: list[NewEvent],
    registry: SchemaRegistry,
    max_payload_bytes: int,
    trace_context: dict[str, str] | None = None,
) -> list[PreparedEvent]:
    """Validate a batch before it touches storage; ``trace_context`` fills each event's metadata
    where the producer did not set those keys itself.

    :raises InvalidEvent: empty stream id or batch, or one event id twice in the batch.
    :raises UnknownEventType, InvalidPayload, PayloadTooLarge: from the payload checks.
    """
    if not stream_id:
        raise InvalidEvent("stream_id must not be empty")
    if not events:
        raise InvalidEvent("an append needs at least one event")
    ids = [e.event_id for e in events]
    if len(set(ids)) != len(ids):
        raise InvalidEvent("the same event id appears twice in one append")
    prepared = []
    for event in events:
        payload = registry.validate(event)
        try:
            payload_json = dump_json(payload)
            metadata_json = dump_json({**(trace_context or {}), **event.metadata})
        except TypeError as exc:
            raise InvalidEvent(
                f"event {event.event_id} ({event.event_type}) cannot be stored as JSON: {exc}"
                " (integers must fit in 64 bits: send bigger ones as strings)"
            ) from None
        if _holds_nul(payload_json) or _holds_nul(metadata_json):
            raise InvalidEvent(
                f"event {event.event_id} ({event.event_type}) holds a NUL character (\\u0000), which"
                " PostgreSQL's jsonb cannot store: strip it, or keep such content in the blob store"
            )
        size = len(payload_json.encode())
        if size > max_payload_bytes:
            raise PayloadTooLarge(event.event_type, size, max_payload_bytes)
        prepared.append(
            PreparedEvent(
                event_id=event.event_id,
                event_type=event.event_type,
                event_version=event.event_version,
                correlation_id=event.correlation_id,
                causation_id=event.causation_id,
                user_id=event.user_id,
                occurred_at=event.occurred_at,
                payload_json=payload_json,
                metadata_json=metadata_json,
            )
        )
    return prepared


def _holds_nul(text: str) -> bool:
    return "\\u0000" in text and _NUL.search(text) is not None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event exactly as stored (payload at its stored schema version)."""

    event_id: uuid.UUID
    stream_id: str
    version: int
    position: int
    event_type: str
    event_version: int
    correlation_id: str
    causation_id: str
    user_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]
    metadata: dict[str, Any]


def to_recorded(stored: StoredEvent, registry: SchemaRegistry) -> RecordedEvent:
    """Upcast a stored event to the newest schema this code knows (unknown types stay raw)."""
    version, payload = registry.upcast(stored.event_type, stored.event_version, stored.payload)
    return RecordedEvent.trusted(
        {
            "event_id": stored.event_id,
            "stream_id": stored.stream_id,
            "version": stored.version,
            "position": stored.position,
            "event_type": stored.event_type,
            "event_version": version,
            "stored_version": stored.event_version,
            "correlation_id": stored.correlation_id,
            "causation_id": stored.causation_id,
            "user_id": stored.user_id,
            "occurred_at": stored.occurred_at,
            "recorded_at": stored.recorded_at,
            "payload": payload,
            "metadata": stored.metadata,
        }
    )


def resolve_duplicate(stream_id: str, batch: list[PreparedEvent], stored: list[StoredEvent]) -> AppendResult:
    """The original result of an append that is being re-sent, after checking it really is one.

    :raises PartialDuplicate: only some of the batch is stored.
    :raises EventIdConflict: an id is stored with another stream, position in it, or body.
    """
    by_id = {s.event_id: s for s in stored}
    if len(by_id) != len(batch):
        raise PartialDuplicate(len(by_id), len(batch))
    originals = [by_id[e.event_id] for e in batch]
    for event, original in zip(batch, originals, strict=True):
        if original.stream_id != stream_id:
            raise EventIdConflict(event.event_id, "stream_id")
        for name in BODY_FIELDS:
            if getattr(event, name) != getattr(original, name):
                raise EventIdConflict(event.event_id, name)
    versions = [o.version for o in originals]
    if versions != list(range(versions[0], versions[0] + len(versions))):
        raise EventIdConflict(batch[0].event_id, "order within the batch")
    return AppendResult(
        stream_id=stream_id,
        first_version=versions[0],
        last_version=versions[-1],
        positions=[o.position for o in originals],
        duplicate=True,
    )


def expected_version_code(expected: ExpectedVersion) -> int:
    """The integer the storage layer compares: -1 any, -2 stream exists, 0 no stream, else exact."""
    if expected is StreamState.ANY:
        return -1
    if expected is StreamState.STREAM_EXISTS:
        return -2
    if expected is StreamState.NO_STREAM:
        return 0
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidEvent(f"expected_version must be a version >= 0 or a StreamState, not {expected!r}")
    return expected


def version_matches(code: int, current: int) -> bool:
    """Whether a stream at ``current`` satisfies an expected-version code."""
    if code == -1:
        return True
    if code == -2:
        return current > 0
    return code == current
