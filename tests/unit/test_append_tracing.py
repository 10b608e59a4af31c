"""Appends open a span and store its W3C context in each event's metadata."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventstore import InMemoryEventStore, NewEvent
from eventstore import tracing as eventstore_tracing
from tests.eventstore.schemas import Noted, make_registry


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A local provider, not the global one: tests must not fight over process-wide state.
    monkeypatch.setattr(eventstore_tracing.trace, "get_tracer", lambda name: provider.get_tracer(name))
    yield exporter


async def test_append_span_carries_ids_and_its_context_lands_in_metadata(spans: InMemorySpanExporter) -> None:
    store = InMemoryEventStore(make_registry())
    event = NewEvent.of(
        Noted(text="x"),
        correlation_id="corr-7",
        causation_id="cause-7",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        metadata={"workflow_id": "wf-1"},
    )
    await store.append("note-trace", [event])
    (span,) = spans.get_finished_spans()
    assert span.name == "eventstore.append"
    assert span.attributes is not None
    assert span.attributes["memsaga.stream_id"] == "note-trace"
    assert list(span.attributes["memsaga.event_ids"]) == [str(event.event_id)]  # type: ignore[arg-type]
    assert span.attributes["memsaga.correlation_id"] == "corr-7"
    (stored,) = await store.read_stream("note-trace")
    _, trace_id, span_id, _ = stored.metadata["traceparent"].split("-")
    assert int(trace_id, 16) == span.context.trace_id and int(span_id, 16) == span.context.span_id
    assert stored.metadata["workflow_id"] == "wf-1"


async def test_without_a_configured_sdk_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    noop = trace.NoOpTracerProvider()
    monkeypatch.setattr(eventstore_tracing.trace, "get_tracer", lambda name: noop.get_tracer(name))
    store = InMemoryEventStore(make_registry())
    event = NewEvent.of(
        Noted(text="x"), correlation_id="c", causation_id="c", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    await store.append("note-untraced", [event])
    (stored,) = await store.read_stream("note-untraced")
    assert "traceparent" not in stored.metadata


async def test_a_traceparent_set_by_the_producer_is_kept(spans: InMemorySpanExporter) -> None:
    store = InMemoryEventStore(make_registry())
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = NewEvent.of(
        Noted(text="x"),
        correlation_id="c",
        causation_id="c",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        metadata={"traceparent": given},
    )
    await store.append("note-explicit", [event])
    (stored,) = await store.read_stream("note-explicit")
    assert stored.metadata["traceparent"] == given
    assert [s.name for s in spans.get_finished_spans()] == ["eventstore.append"]


async def test_without_a_configured_sdk_a_callers_context_passes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No span is made then, but the caller's (another library's, say) still lands in metadata."""
    noop = trace.NoOpTracerProvider()
    monkeypatch.setattr(eventstore_tracing.trace, "get_tracer", lambda name: noop.get_tracer(name))
    caller = TracerProvider().get_tracer("caller")
    store = InMemoryEventStore(make_registry())
    event = NewEvent.of(
        Noted(text="x"), correlation_id="c", causation_id="c", occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    with caller.start_as_current_span("caller") as span:
        await store.append("note-passing", [event])
    (stored,) = await store.read_stream("note-passing")
    _, trace_id, span_id, _ = stored.metadata["traceparent"].split("-")
    assert int(trace_id, 16) == span.get_span_context().trace_id
    assert int(span_id, 16) == span.get_span_context().span_id
