"""OpenTelemetry around appends: one span per append, its W3C context stored in each event's
metadata (``traceparent``) so that whoever handles the event later — the relay, a projection,
a replay months on — can join or link to the trace. Uses only the OTel API: without an SDK
configured, spans are no-ops and nothing is added."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import Attributes

from eventstore.envelope import NewEvent

TRACER_NAME = "memsaga.eventstore"


@contextmanager
def append_span(stream_id: str, events: list[NewEvent]) -> Iterator[dict[str, str]]:
    """Span ``eventstore.append``; yields the carrier (``traceparent``…) to merge into metadata."""
    tracer = trace.get_tracer(TRACER_NAME)
    attributes: Attributes = {
        "db.system": "postgresql",
        "memsaga.stream_id": stream_id,
        "memsaga.event_count": len(events),
        "memsaga.event_ids": [str(e.event_id) for e in events],
        "memsaga.event_types": [e.event_type for e in events],
        "memsaga.correlation_id": events[0].correlation_id if events else "",
        "memsaga.causation_ids": sorted({e.causation_id for e in events}),
    }
    with tracer.start_as_current_span("eventstore.append", kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier
