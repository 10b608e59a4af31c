"""OpenTelemetry spans of the read side, joined to the request's trace through W3C context.

The append stored the trace context in the event's metadata; the relay's publish span is its
child and sends *its own* context in the NATS headers; the projection's handling span is the
child of that (the direct causal step). A rebuild replays events long after their requests,
so its spans link to their traces instead of joining them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from eventstore import RecordedEvent

TRACER_NAME = "memsaga.projections"


def _event_attributes(event: RecordedEvent) -> dict[str, str | int]:
    return {
        "messaging.system": "nats",
        "messaging.message.id": str(event.event_id),
        "messaging.message.conversation_id": event.correlation_id,
        "memsaga.event_type": event.event_type,
        "memsaga.stream_id": event.stream_id,
        "memsaga.position": event.position,
        "memsaga.causation_id": event.causation_id,
    }


def start_publish_span(event: RecordedEvent, subject: str) -> tuple[Span, dict[str, str]]:
    """Start ``publish <subject>`` under the event's stored context; returns it and the headers
    carrying its context (the caller ends the span once JetStream acknowledged)."""
    parent = propagate.extract(event.metadata)
    span = trace.get_tracer(TRACER_NAME).start_span(
        f"publish {subject}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            **_event_attributes(event),
            "messaging.operation.type": "publish",
            "messaging.destination.name": subject,
        },
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End a span, recording ``error`` when there was one."""
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


@contextmanager
def handling_span(projection: str, event: RecordedEvent, headers: Mapping[str, str] | None) -> Iterator[Span]:
    """``<projection> apply <type>``, a consumer span whose parent is the publish span (from the headers)."""
    parent = propagate.extract(dict(headers or {}))
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        f"{projection} apply {event.event_type}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            **_event_attributes(event),
            "messaging.operation.type": "process",
            "memsaga.projection": projection,
        },
    ) as span:
        yield span


@contextmanager
def replay_span(projection: str, events: list[RecordedEvent]) -> Iterator[Span]:
    """``<projection> rebuild batch``, linked (not parented) to the traces of the events it replays."""
    links = []
    for event in events:
        context = trace.get_current_span(propagate.extract(event.metadata)).get_span_context()
        if context.is_valid:
            links.append(Link(context, {"memsaga.event_id": str(event.event_id)}))
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        f"{projection} rebuild batch",
        links=links,
        attributes={"memsaga.projection": projection, "memsaga.event_count": len(events)},
    ) as span:
        yield span
