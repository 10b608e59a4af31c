"""``RecordedEvent.trusted``: the replay path's envelope must be the validated one, field for field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from eventstore import RecordedEvent


def _fields() -> dict[str, object]:
    when = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    return {
        "event_id": uuid.uuid4(),
        "stream_id": "memory-1",
        "version": 2,
        "position": 41,
        "event_type": "MemoryRetracted",
        "event_version": 2,
        "stored_version": 1,
        "correlation_id": "corr",
        "causation_id": "cause",
        "user_id": None,
        "occurred_at": when,
        "recorded_at": when,
        "payload": {"memory_id": "1", "reason": "user asked"},
        "metadata": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        "sealed": None,
    }


def test_trusted_equals_validated() -> None:
    fields = _fields()
    trusted = RecordedEvent.trusted(dict(fields))
    validated = RecordedEvent.model_validate(fields)
    assert trusted == validated
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.category == "memory"


def test_copies_of_trusted_events_do_not_touch_others() -> None:
    first, second = RecordedEvent.trusted(_fields()), RecordedEvent.trusted(_fields())
    copy = first.model_copy(update={"event_version": 3})
    assert (copy.event_version, first.event_version, second.event_version) == (3, 2, 2)
    assert first.model_fields_set == second.model_fields_set == set(RecordedEvent.model_fields)


def test_a_sealed_event_crosses_json_as_base64_and_comes_back_equal() -> None:
    event = RecordedEvent.trusted({**_fields(), "sealed": bytes(range(256))})  # not UTF-8
    text = event.model_dump_json()
    assert '"sealed":"AAECAw' in text
    assert RecordedEvent.model_validate_json(text) == event
