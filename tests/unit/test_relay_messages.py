"""What the relay sends per event, without services: the body's bytes, the subject and headers,
and the spans of a batch (one root per batch, a publish span per traced event)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventstore import RecordedEvent
from projections.partitioning import slot_of
from projections.subjects import (
    TRACEPARENT,
    decode_body,
    event_body,
    event_headers,
    event_subject,
    subject_token,
)
from projections.tracing import MAX_BATCH_LINKS, start_batch_trace


def recorded(position: int = 1, **overrides: Any) -> RecordedEvent:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID(int=position),
        "stream_id": f"memory-m{position}",
        "version": 1,
        "position": position,
        "event_type": "MemoryCreated",
        "event_version": 1,
        "stored_version": 1,
        "correlation_id": f"corr-{position}",
        "causation_id": "cause",
        "user_id": "u1",
        "occurred_at": datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "recorded_at": datetime(2026, 1, 1, 12, 30, 16, tzinfo=UTC),
        "payload": {"memory_id": f"m{position}"},
        "metadata": {},
    }
    return RecordedEvent.model_validate({**fields, **overrides})


ODD_EVENTS = [
    recorded(),
    recorded(
        user_id=None,
        occurred_at=datetime(2025, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
        payload={
            "text": "Ana lives in Porto — “quoted” \\ back\u2028slash \x00 😀",
            "floats": [0.1, 1e-07, 1.5e300, -0.0],
            "nested": {"list": [1, None, True, {"k": "v"}], "big": 2**70},
        },
        metadata={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "workflow_id": "wf"},
    ),
]


@pytest.mark.parametrize("event", ODD_EVENTS)
def test_body_is_byte_for_byte_the_model_json_and_decodes_to_the_event(event: RecordedEvent) -> None:
    body = event_body(event)
    assert body == event.model_dump_json().encode()  # the format consumers have been reading
    assert decode_body(body) == event


def test_subject_from_the_cache_matches_the_rule_every_time() -> None:
    for stream_id, event_type in [("memory-1", "MemoryCreated"), ("a.b c-2", "X*Y"), ("-3", ">")]:
        event = recorded(stream_id=stream_id, event_type=event_type)
        expected = f"p.{subject_token(event.category)}.{subject_token(event_type)}.{slot_of(event.user_id)}"
        assert event_subject(event, "p") == event_subject(event, "p") == expected


def test_headers_replace_line_breaks_in_every_copied_value() -> None:
    event = recorded(
        event_type="Memory\nCreated",
        stream_id="memory-\r\n1",
        causation_id="a\r\rb",
        metadata={"traceparent": "00-x\n-01", "tracestate": "k=v"},
    )
    headers = event_headers(event)
    assert all("\r" not in v and "\n" not in v for v in headers.values())
    assert headers["Memsaga-Event-Type"] == "Memory Created" and headers["Memsaga-Causation-Id"] == "a b"
    assert (headers[TRACEPARENT], headers["tracestate"]) == ("00-x -01", "k=v")


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A local provider, not the global one: tests must not fight over process-wide state.
    monkeypatch.setattr(trace, "get_tracer", lambda name: provider.get_tracer(name))
    yield exporter


def traced(position: int, trace_id: int, span_id: int = 1) -> RecordedEvent:
    return recorded(position, metadata={"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"})


def test_traced_events_get_a_publish_span_in_their_trace_the_rest_the_batch_context(
    spans: InMemorySpanExporter,
) -> None:
    events = [traced(1, trace_id=7, span_id=3), recorded(2), traced(3, trace_id=7, span_id=4), recorded(4)]
    subjects = [event_subject(e, "t") for e in events]
    batch_trace = start_batch_trace("S", events, subjects)
    batch_trace.end([False, True, True, False])

    (batch,) = [s for s in spans.get_finished_spans() if s.name == "relay batch S"]
    publishes = [
        s for s in spans.get_finished_spans() if s.name.startswith("publish t.memory.MemoryCreated.")
    ]
    assert len(publishes) == 2 and len(spans.get_finished_spans()) == 3  # the traced events only
    assert batch.parent is None and batch.kind is SpanKind.PRODUCER
    assert [link.context.trace_id for link in batch.links] == [7]  # one link per distinct trace
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 4
    assert (batch.attributes["memsaga.first_position"], batch.attributes["memsaga.last_position"]) == (1, 4)
    assert (batch.attributes["memsaga.traced_events"], batch.attributes["memsaga.duplicates"]) == (2, 2)
    for publish, event, stored_span in zip(publishes, [events[0], events[2]], [3, 4], strict=True):
        assert publish.context.trace_id == 7 and publish.parent is not None
        assert publish.parent.span_id == stored_span and publish.kind is SpanKind.PRODUCER
        assert [link.context.span_id for link in publish.links] == [batch.context.span_id]
        assert publish.attributes is not None
        assert publish.attributes["messaging.message.id"] == str(event.event_id)
    assert [p.attributes and p.attributes["memsaga.duplicate"] for p in publishes] == [False, True]

    # The headers: each traced event's own publish span; the batch span for the others.
    contexts = [
        trace.get_current_span(propagate.extract(dict(h))).get_span_context() for h in batch_trace.headers
    ]
    assert [c.span_id for c in contexts] == [
        publishes[0].context.span_id,
        batch.context.span_id,
        publishes[1].context.span_id,
        batch.context.span_id,
    ]


def test_batch_links_are_capped_and_failures_end_every_span_with_an_error(
    spans: InMemorySpanExporter,
) -> None:
    events = [traced(n, trace_id=100 + n) for n in range(1, MAX_BATCH_LINKS + 6)]
    batch_trace = start_batch_trace("S", events, ["s"] * len(events))
    batch_trace.fail(TimeoutError("no acks"))

    finished = spans.get_finished_spans()
    (batch,) = [s for s in finished if s.name == "relay batch S"]
    assert len(batch.links) == MAX_BATCH_LINKS
    assert batch.attributes is not None and batch.attributes["memsaga.linked_traces"] == len(events)
    assert len(finished) == len(events) + 1
    assert all(s.status.status_code is StatusCode.ERROR for s in finished)


def test_one_failed_message_marks_its_span_and_the_batch(spans: InMemorySpanExporter) -> None:
    events = [traced(1, trace_id=1), traced(2, trace_id=2)]
    start_batch_trace("S", events, ["s", "s"]).end([False, ConnectionError("lost")])
    publishes = [s for s in spans.get_finished_spans() if s.name.startswith("publish ")]
    by_position = {s.attributes["memsaga.position"]: s for s in publishes if s.attributes}
    assert by_position[1].status.status_code is StatusCode.UNSET
    assert by_position[2].status.status_code is StatusCode.ERROR
    (batch,) = [s for s in spans.get_finished_spans() if s.name == "relay batch S"]
    assert batch.status.status_code is StatusCode.ERROR


def test_without_a_tracer_the_stored_context_is_what_travels(monkeypatch: pytest.MonkeyPatch) -> None:
    noop = trace.NoOpTracerProvider()
    monkeypatch.setattr(trace, "get_tracer", lambda name: noop.get_tracer(name))
    events = [traced(1, trace_id=5), recorded(2)]
    batch_trace = start_batch_trace("S", events, ["s", "s"])
    # The stored context passes through unchanged; an untraced event gets none.
    assert [dict(h).get(TRACEPARENT) for h in batch_trace.headers] == [events[0].metadata[TRACEPARENT], None]
    batch_trace.end([False, False])
