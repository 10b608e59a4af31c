"""OpenTelemetry around appends: one span per append, its W3C context stored in each event's
metadata (``traceparent``) so that whoever handles the event later — the relay, a projection,
a replay months on — can join or link to the trace. Uses only the OTel API: without an SDK
configured, spans are no-ops and nothing is added."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from eventstore.envelope import NewEvent

TRACER_NAME = "memsaga.eventstore"


MAX_ID_ATTRIBUTES = 16
"""Event ids named on an append span; a bigger batch names its first ones (and its count)."""


@contextmanager
def append_span(stream_id: str, events: list[NewEvent]) -> Iterator[dict[str, str]]:
    """Span ``eventstore.append``; yields the carrier (``traceparent``…) to merge into metadata.

    Attributes are only built when the span records (an SDK is installed): appends are hot.
    Without an SDK no span is made at all: a no-op span would only pass the caller's context
    through, which the carrier then gets directly (a few µs per append less).
    """
    carrier: dict[str, str] = {}
    used, noop = _tracer(TRACER_NAME)
    if noop:
        if trace.get_current_span().get_span_context().is_valid:  # a caller's, passing through
            propagate.inject(carrier)
        yield carrier
        return
    with used.start_as_current_span("eventstore.append", kind=SpanKind.PRODUCER) as span:
        if span.is_recording():
            span.set_attributes(_attributes(stream_id, events))
        if span.get_span_context().is_valid:  # ours, or a caller's passing through a no-op span
            propagate.inject(carrier)
        yield carrier


_tracers: dict[str, tuple[tuple[object, object], trace.Tracer, bool]] = {}


def tracer(name: str) -> trace.Tracer:
    """The tracer ``name`` of the global provider, fetched again only when that provider (or
    ``trace.get_tracer`` itself, as tests patch it) changes: with the SDK, ``get_tracer``
    builds a new tracer on every call, which hot paths (an append, a handled event) feel."""
    return _tracer(name)[0]


def _tracer(name: str) -> tuple[trace.Tracer, bool]:
    """:func:`tracer`, and whether it is a no-op one (no SDK: its spans only pass the current
    context through)."""
    provider = trace.get_tracer_provider()
    key = (trace.get_tracer, provider)
    cached = _tracers.get(name)
    if cached is None or cached[0] != key:
        found = trace.get_tracer(name)
        noop = isinstance(found, trace.NoOpTracer) or (
            isinstance(found, trace.ProxyTracer) and isinstance(provider, trace.ProxyTracerProvider)
        )
        cached = _tracers[name] = (key, found, noop)
    return cached[1], cached[2]


def _attributes(stream_id: str, events: list[NewEvent]) -> dict[str, AttributeValue]:
    return {
        "db.system": "postgresql",
        "memsaga.stream_id": stream_id,
        "memsaga.event_count": len(events),
        "memsaga.event_ids": [str(e.event_id) for e in events[:MAX_ID_ATTRIBUTES]],
        "memsaga.event_types": sorted({e.event_type for e in events}),
        "memsaga.correlation_id": events[0].correlation_id if events else "",
        "memsaga.causation_ids": sorted({e.causation_id for e in events})[:MAX_ID_ATTRIBUTES],
    }
