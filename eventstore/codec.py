"""Turning new events into the rows both stores keep, with the checks every append makes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from eventstore.columns import BODY_FIELDS, COLUMNS, WRITTEN, decode_row, load_json
from eventstore.encryption import SEALED
from eventstore.envelope import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamState
from eventstore.errors import EventIdConflict, InvalidEvent, InvalidQuery, PartialDuplicate, PayloadTooLarge
from eventstore.registry import SchemaRegistry

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
# How JSON writes a NUL character (which jsonb refuses): \u0000 after an even number of
# backslashes; after an odd number it is the text "\u0000" itself, which is fine.
Sealer = Callable[[NewEvent, dict[str, Any]], "tuple[dict[str, Any], bytes] | None"]
"""Encrypts a validated payload: ``(redacted payload, sealed payload)``, or None when it has no
personal value (:func:`eventstore.encryption.seal_event`)."""
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")


def dump_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept as is.

    :raises TypeError: a value JSON cannot hold, or an integer beyond 64 bits (which
        readers would get back as a float: events must replay exactly).
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class PreparedEvent(NamedTuple):
    """A validated event with its payload and metadata serialised once: the written
    :data:`~eventstore.columns.COLUMNS`, by their ``attr`` names and in their order (a tuple, so
    that it is an append function's arguments as it is)."""

    event_id: uuid.UUID
    event_type: str
    event_version: int
    correlation_id: str
    causation_id: str
    user_id: str | None
    occurred_at: datetime
    payload_json: str
    metadata_json: str
    sealed: bytes | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a reader will see it (parsed from its JSON; the duplicate check needs it)."""
        value: dict[str, Any] = load_json(self.payload_json)
        return value


# Copied from the NewEvent as they are, first in the written order; the JSON columns are
# serialised by prepare_batch, the derived ones made there.
_PLAIN_WRITTEN = tuple(c.name for c in WRITTEN if not c.json and not c.derived)
_ATTRS = tuple(c.attr for c in WRITTEN)
if PreparedEvent._fields != _ATTRS or _ATTRS[: len(_PLAIN_WRITTEN)] != _PLAIN_WRITTEN:
    raise ImportError("PreparedEvent's fields must be the written columns' attrs, the plain ones first")
_plain_columns = attrgetter(*_PLAIN_WRITTEN)
_SORTED = orjson.OPT_SORT_KEYS
_SEALED_MARK = {SEALED: True}


def prepare_batch(
    stream_id: str,
    events: list[NewEvent],
    registry: SchemaRegistry,
    max_payload_bytes: int,
    trace_context: dict[str, str] | None = None,
    seal: Sealer | None = None,
) -> list[PreparedEvent]:
    """Validate a batch before it touches storage; ``trace_context`` fills each event's metadata
    where the producer did not set those keys itself. ``seal`` encrypts an event's personal
    fields (after validation, before the size check: the redacted payload and the ciphertext
    count together) and returns None for an event without any; a sealed event is marked in its
    metadata (:data:`~eventstore.encryption.SEALED`).

    :raises InvalidEvent: empty stream id or batch, or one event id twice in the batch.
    :raises UnknownEventType, InvalidPayload, PayloadTooLarge: from the payload checks.
    """
    if not stream_id:
        raise InvalidEvent("stream_id must not be empty")
    if not events:
        raise InvalidEvent("an append needs at least one event")
    if len(events) > 1 and len({e.event_id for e in events}) != len(events):
        raise InvalidEvent("the same event id appears twice in one append")
    prepared = []
    for event in events:
        payload = registry.validate(event)
        metadata = {**trace_context, **event.metadata} if trace_context else event.metadata
        ciphertext = None
        if seal is not None and (sealed := seal(event, payload)) is not None:
            (payload, ciphertext), metadata = sealed, {**metadata, **_SEALED_MARK}
        try:
            payload_bytes = orjson.dumps(payload, option=_SORTED)
            metadata_json = orjson.dumps(metadata, option=_SORTED).decode()
        except TypeError as exc:
            raise InvalidEvent(
                f"event {event.event_id} ({event.event_type}) cannot be stored as JSON: {exc}"
                " (integers must fit in 64 bits: send bigger ones as strings)"
            ) from None
        payload_json = payload_bytes.decode()
        if _holds_nul(payload_json) or _holds_nul(metadata_json):
            raise InvalidEvent(
                f"event {event.event_id} ({event.event_type}) holds a NUL character (\\u0000), which"
                " PostgreSQL's jsonb cannot store: strip it, or keep such content in the blob store"
            )
        size = len(payload_bytes) + (0 if ciphertext is None else len(ciphertext))
        if size > max_payload_bytes:
            raise PayloadTooLarge(event.event_type, size, max_payload_bytes)
        columns = (*_plain_columns(event), payload_json, metadata_json, ciphertext)
        prepared.append(PreparedEvent._make(columns))
    return prepared


def _holds_nul(text: str) -> bool:
    return "\\u0000" in text and _NUL.search(text) is not None


AS_STORED = SchemaRegistry()
"""A registry without upcasters: decodes rows exactly as stored (what the duplicate check compares)."""


def as_stored(prepared: PreparedEvent, **assigned: Any) -> RecordedEvent:
    """The event as a store keeps it, not upcast: ``prepared`` plus the columns the store
    assigns (``stream_id``, ``version``, ``position``, ``recorded_at``; see :data:`COLUMNS`)."""
    row = [getattr(prepared, c.attr) if c.written else assigned[c.name] for c in COLUMNS]
    return decode_row(row, AS_STORED)


def upcast(stored: RecordedEvent, registry: SchemaRegistry) -> RecordedEvent:
    """A stored event upcast to the newest schema ``registry`` knows (unknown types stay raw)."""
    version, payload = registry.upcast(stored.event_type, stored.stored_version, stored.payload)
    return RecordedEvent.trusted({**stored.__dict__, "event_version": version, "payload": payload})


def resolve_duplicate(
    stream_id: str, batch: list[PreparedEvent], stored: list[RecordedEvent]
) -> AppendResult:
    """The original result of an append that is being re-sent, after checking it really is one
    (``stored``: the batch's ids as stored, decoded with :data:`AS_STORED`).

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


def checked_payload_field(name: str) -> str:
    """``name``, checked to be a payload field a query may name (PostgreSQL spells it out, so that
    an expression index on it applies).

    :raises InvalidQuery: not a lower-case identifier.
    """
    if not _FIELD.fullmatch(name):
        raise InvalidQuery(f"payload field {name!r} is not a lower-case identifier")
    return name
