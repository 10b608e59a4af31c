"""Fast checks without services: subjects, headers, limits, projection declarations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from nats.js.api import RetentionPolicy, StorageType

from eventstore import RecordedEvent
from projections import EXTRACTIONS, MEMORIES, MEMORY_SEARCH, PROJECTIONS, UnknownProjection, find_projection
from projections.partitioning import slot_of
from projections.stream import stream_config, stream_limits
from projections.subjects import (
    EVENT_ID,
    MSG_ID,
    TRACEPARENT,
    decode_body,
    event_body,
    event_headers,
    event_subject,
    stream_subjects,
    type_filter,
)
from sagas.memory_extraction.events import ALL_EVENTS
from sagas.memory_extraction.lifecycle import LIFECYCLE_EVENTS


def recorded(**overrides: object) -> RecordedEvent:
    fields: dict[str, object] = {
        "event_id": uuid.UUID(int=7),
        "stream_id": "memory-m1",
        "version": 1,
        "position": 42,
        "event_type": "MemoryCreated",
        "event_version": 1,
        "stored_version": 1,
        "correlation_id": "corr-1",
        "causation_id": "cause-1",
        "user_id": "u1",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "recorded_at": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        "payload": {"memory_id": "m1"},
        "metadata": {},
    }
    return RecordedEvent.model_validate({**fields, **overrides})


def test_subject_is_prefix_category_type_slot() -> None:
    slot = slot_of("u1")
    assert event_subject(recorded()) == f"events.memory.MemoryCreated.{slot}"
    assert event_subject(recorded(stream_id="episode-e1"), "t1") == f"t1.episode.MemoryCreated.{slot}"
    assert event_subject(recorded(user_id=None)) == "events.memory.MemoryCreated.0"
    # Anything NATS could read as syntax is escaped (~ and its UTF-8 hex), injectively.
    assert (
        event_subject(recorded(stream_id="a.b*c>d e-1")) == f"events.a~2Eb~2Ac~3Ed~20e.MemoryCreated.{slot}"
    )
    assert event_subject(recorded(stream_id="-x")) == f"events.~.MemoryCreated.{slot}"
    assert type_filter("MemoryCreated") == "events.*.MemoryCreated"
    assert stream_subjects("events") == ["events.>"]


def test_headers_carry_ids_and_trace_context_only_when_present() -> None:
    headers = event_headers(recorded(correlation_id="line\r\nbreak"))
    assert headers[MSG_ID] == headers[EVENT_ID] == str(uuid.UUID(int=7))
    assert headers["Memsaga-Correlation-Id"] == "line break"
    assert TRACEPARENT not in headers
    traced = event_headers(
        recorded(metadata={"traceparent": "00-abc-def-01", "other": 1}), msg_id="x:republish"
    )
    assert traced[TRACEPARENT] == "00-abc-def-01" and "other" not in traced
    assert (traced[MSG_ID], traced[EVENT_ID]) == ("x:republish", str(uuid.UUID(int=7)))


def test_body_round_trips() -> None:
    event = recorded(metadata={"traceparent": "00-a-b-01"})
    assert decode_body(event_body(event)) == event


def test_the_provisioned_stream_has_no_limits() -> None:
    config = stream_config("S", "events", 120)
    assert stream_limits(config) == []
    assert config.storage == StorageType.FILE and config.subjects == ["events.>"]
    assert config.as_dict()["max_age"] == 0 and config.as_dict()["duplicate_window"] == 120 * 10**9


def test_every_kind_of_limit_is_reported() -> None:
    config = stream_config("S", "events", 120)
    config.max_msgs, config.max_bytes, config.max_age, config.max_msgs_per_subject = 10, 2048, 60.0, 3
    config.retention, config.storage = RetentionPolicy.WORK_QUEUE, StorageType.MEMORY
    problems = stream_limits(config)
    assert problems[:4] == ["max_msgs=10", "max_bytes=2048", "max_msgs_per_subject=3", "max_age=60s"]
    assert any("workqueue" in p for p in problems) and any("memory" in p for p in problems)


def test_projection_declarations() -> None:
    assert set(PROJECTIONS) == {"memories", "extractions", "memory_search"}
    # every event of a memory's stream, and the one that drops a forgotten user's rows
    assert MEMORIES.event_types == tuple(sorted({*LIFECYCLE_EVENTS, "UserForgotten"}))
    # and the re-extraction events that bring other models' vectors and switch users to them
    reembedding = {"EpisodeReextracted", "ReextractionCompleted"}
    assert MEMORY_SEARCH.event_types == tuple(sorted({*MEMORIES.event_types, *reembedding}))
    assert MEMORY_SEARCH.extensions == ("vector",)
    assert MEMORIES.extensions == EXTRACTIONS.extensions == ()
    assert set(EXTRACTIONS.event_types) == {
        *(m.event_type for m in ALL_EVENTS),
        "UserForgotten",
    }  # every saga event is on the timeline
    assert MEMORIES.durable_name == "proj-memories"
    assert MEMORIES.tables_at(3)["memories"] == 'memsaga_read."memories_v3"'
    assert MEMORIES.views()["memories"] == 'memsaga_read."memories"'
    ddl = EXTRACTIONS.ddl_at(2)
    assert "{" not in ddl and 'memsaga_read."extraction_timeline_v2"' in ddl
    with pytest.raises(UnknownProjection, match="known: extractions, memories, memory_search"):
        find_projection(PROJECTIONS, "nope")
    with pytest.raises(ValueError, match="lower_snake"):
        type(MEMORIES)(name="Bad-Name", version=1, tables=(), ddl="", handlers={})
