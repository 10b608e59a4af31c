"""How an event travels on NATS: its subject, its headers and its body.

Subject: ``<prefix>.<category>.<event_type>.<slot>`` (``events.memory.MemoryCreated.17``), so a
consumer can filter by category, type or slot with wildcards; the slot is the user's
(:func:`projections.partitioning.slot_of`), so that a partition of a projection filters on its
slots. Streams written before slots existed hold three-token subjects
(``events.memory.MemoryCreated``): the filters of an unpartitioned consumer match both forms.
The body is the recorded event as JSON; the headers repeat what a consumer needs without
parsing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from nats.js.api import Header

from eventstore import RecordedEvent
from projections.partitioning import slot_of, slots_of

MSG_ID = Header.MSG_ID.value  # "Nats-Msg-Id": JetStream drops a re-send inside the duplicate window
EVENT_ID = "Memsaga-Event-Id"
EVENT_TYPE = "Memsaga-Event-Type"
EVENT_VERSION = "Memsaga-Event-Version"
CORRELATION_ID = "Memsaga-Correlation-Id"
CAUSATION_ID = "Memsaga-Causation-Id"
STREAM_ID = "Memsaga-Stream-Id"
POSITION = "Memsaga-Position"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

DEFAULT_PREFIX = "events"

_SERIALIZER = RecordedEvent.__pydantic_serializer__
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPED = re.compile(r"[^A-Za-z0-9_-]")
_BAD_HEADER = re.compile(r"[\r\n]+")


def _escape(match: re.Match[str]) -> str:
    return "".join(f"~{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


def subject_token(text: str) -> str:
    """``text`` as one subject token: letters, digits, ``_`` and ``-`` as they are, every other
    character as ``~`` and the hex of its UTF-8 bytes (``a.b`` is ``a~2Eb``; empty is ``~``).

    So no token holds a dot, a wildcard (``*``, ``>``), whitespace or a control character,
    whatever the text, and two texts never share a token (categories and event types are
    plain names; an escaped one only ever names its own subject).
    """
    if _PLAIN_TOKEN.fullmatch(text):
        return text
    return _ESCAPED.sub(_escape, text) or "~"


def event_subject(event: RecordedEvent, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject an event is published on: ``<prefix>.<category>.<event_type>.<slot>``."""
    return f"{_subject(prefix, event.category, event.event_type)}.{slot_of(event.user_id)}"


@lru_cache(maxsize=4096)
def _subject(prefix: str, category: str, event_type: str) -> str:
    # Few categories and types, many events: the relay asks for every event it publishes.
    return f"{prefix}.{subject_token(category)}.{subject_token(event_type)}"


def type_filter(event_type: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject filter matching one event type in every category, as published before slots."""
    return f"{prefix}.*.{subject_token(event_type)}"


def type_filters(event_type: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The filters matching one event type in every category and slot, and in old three-token
    messages (an unpartitioned consumer on a stream written before slots existed)."""
    return [type_filter(event_type, prefix), f"{type_filter(event_type, prefix)}.*"]


def partition_filters(
    event_types: Sequence[str], partition: int, partitions: int, prefix: str = DEFAULT_PREFIX
) -> list[str]:
    """The filters of one partition's consumer: each type in each of the partition's slots
    (``len(event_types) * 64 / partitions`` subjects). Old three-token messages carry no slot
    and match none: a partitioned version is built from the event store, not from them."""
    slots = slots_of(partition, partitions)
    return [f"{type_filter(t, prefix)}.{slot}" for t in event_types for slot in slots]


def stream_subjects(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The subjects the events stream captures."""
    return [f"{prefix}.>"]


def _header_value(value: object) -> str:
    text = str(value)
    if "\r" in text or "\n" in text:  # a line break would end the header block
        return _BAD_HEADER.sub(" ", text)
    return text


def event_headers(event: RecordedEvent, *, msg_id: str | None = None) -> dict[str, str]:
    """Headers of an event's message; ``traceparent``/``tracestate`` only when its metadata has them.

    The message id is the event id unless ``msg_id`` overrides it (a deliberate republish).
    """
    event_id = str(event.event_id)
    headers = {
        MSG_ID: msg_id or event_id,
        EVENT_ID: event_id,
        EVENT_TYPE: _header_value(event.event_type),
        EVENT_VERSION: str(event.event_version),
        CORRELATION_ID: _header_value(event.correlation_id),
        CAUSATION_ID: _header_value(event.causation_id),
        STREAM_ID: _header_value(event.stream_id),
        POSITION: str(event.position),
    }
    metadata = event.metadata
    if metadata:
        for key in (TRACEPARENT, TRACESTATE):
            value = metadata.get(key)
            if isinstance(value, str) and value:
                headers[key] = _header_value(value)
    return headers


def event_body(event: RecordedEvent) -> bytes:
    """The message body: the recorded event as JSON (the bytes of ``model_dump_json()``, made
    straight by the model's serializer: no ``str`` round trip)."""
    return _SERIALIZER.to_json(event)


def decode_body(data: bytes) -> RecordedEvent:
    """The recorded event a message carries. :raises pydantic.ValidationError: not one of ours."""
    return RecordedEvent.model_validate_json(data)
