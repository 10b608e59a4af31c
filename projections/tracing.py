"""OpenTelemetry spans of the read side, joined to the request's trace through W3C context.

The append stored the trace context in the event's metadata; the relay's publish span is its
child and sends *its own* context in the NATS headers; the projection's handling span is the
child of that (the direct causal step). The relay also spans each batch it publishes, a root
linked to its events' traces; an event stored without a trace context gets no publish span of
its own, and its message carries the batch's context. Such events belong to no request's trace,
so the runner gives them no span each either: one batch span covers those of a fetched batch
(a span per event cost about a fifth of a runner's CPU in catch-up). A rebuild replays events
long after their requests, so its spans link to their traces instead of joining them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from eventstore import RecordedEvent
from eventstore.tracing import tracer

TRACER_NAME = "memsaga.projections"
MAX_BATCH_LINKS = 32  # distinct traces a relay batch span links to; the rest are only counted


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


@dataclass(frozen=True)
class BatchTrace:
    """The spans of one relayed batch, and the trace headers of each of its messages.

    ``spans[i]`` is message ``i``'s ``publish`` span (None for an event without a stored trace
    context); ``headers[i]`` carries that span's context, or the batch span's (a dict shared by
    those messages: copy it, don't change it).
    """

    batch: Span
    spans: list[Span | None]
    headers: list[Mapping[str, str]]

    def end(self, outcomes: Sequence[bool | BaseException]) -> None:
        """End every span once the batch settled: per message, whether JetStream called it a
        duplicate, or why it failed (the batch span records the first failure)."""
        duplicates = 0
        failure: BaseException | None = None
        for span, outcome in zip(self.spans, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
                if span is not None:
                    end_span(span, outcome)
                continue
            duplicates += outcome
            if span is not None:
                span.set_attribute("memsaga.duplicate", outcome)
                span.end()
        self.batch.set_attribute("memsaga.duplicates", duplicates)
        end_span(self.batch, failure)

    def fail(self, error: BaseException) -> None:
        """End every span with ``error`` (the batch did not settle)."""
        for span in self.spans:
            if span is not None:
                end_span(span, error)
        end_span(self.batch, error)


def start_batch_trace(stream: str, events: Sequence[RecordedEvent], subjects: Sequence[str]) -> BatchTrace:
    """Start the spans of a batch about to be published (``subjects[i]`` is ``events[i]``'s).

    ``relay batch <stream>`` (PRODUCER) is a root linked to the distinct traces of the events
    (at most :data:`MAX_BATCH_LINKS`). Each event with a stored trace context gets ``publish
    <subject>`` (PRODUCER), a child of that context linked to the batch span, so a projection's
    handling span joins the event's own trace; the rest get no span of their own.
    """
    batch_tracer = tracer(TRACER_NAME)
    fields = propagate.get_global_textmap().fields
    parents: list[Context | None] = []
    links: list[Link] = []
    linked: set[int] = set()
    for event in events:
        parent = None
        if event.metadata and not fields.isdisjoint(event.metadata):
            context = propagate.extract(event.metadata)
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                parent = context
                if span_context.trace_id not in linked:
                    linked.add(span_context.trace_id)
                    if len(links) < MAX_BATCH_LINKS:
                        links.append(Link(span_context))
        parents.append(parent)
    batch = batch_tracer.start_span(
        f"relay batch {stream}",
        context=Context(),  # a root: a long-running relay's batches belong to no caller's trace
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "publish",
            "messaging.batch.message_count": len(events),
            "memsaga.stream": stream,
            "memsaga.first_position": events[0].position if events else 0,
            "memsaga.last_position": events[-1].position if events else 0,
            "memsaga.traced_events": sum(p is not None for p in parents),
            "memsaga.linked_traces": len(linked),
        },
    )
    batch_headers: dict[str, str] = {}
    propagate.inject(batch_headers, context=trace.set_span_in_context(batch))
    to_batch = [Link(batch.get_span_context())]
    spans: list[Span | None] = []
    headers: list[Mapping[str, str]] = []
    for event, subject, parent in zip(events, subjects, parents, strict=True):
        if parent is None:
            spans.append(None)
            headers.append(batch_headers)
            continue
        span = batch_tracer.start_span(
            f"publish {subject}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=to_batch,
            # Few attributes, one span per message: the rest is on the append and batch spans.
            attributes={
                "messaging.message.id": str(event.event_id),
                "messaging.destination.name": subject,
                "memsaga.position": event.position,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        spans.append(span)
        headers.append(carrier)
    return BatchTrace(batch, spans, headers)


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End a span, recording ``error`` when there was one."""
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


def carries_trace(event: RecordedEvent) -> bool:
    """Whether the event was stored with a trace context (the relay published it with a span of
    its own, so that its handling joins the request's trace)."""
    metadata = event.metadata
    return bool(metadata) and not propagate.get_global_textmap().fields.isdisjoint(metadata)


@contextmanager
def handling_span(projection: str, event: RecordedEvent, headers: Mapping[str, str] | None) -> Iterator[Span]:
    """``<projection> apply <type>``, a consumer span whose parent is the publish span (from the headers)."""
    parent = propagate.extract(dict(headers or {}))
    with tracer(TRACER_NAME).start_as_current_span(
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
def batch_handling_span(
    projection: str, events: Sequence[RecordedEvent], headers: Sequence[Mapping[str, str] | None]
) -> Iterator[Span]:
    """``<projection> apply batch``, one consumer span for events stored without a trace context
    (``headers[i]`` are ``events[i]``'s message headers, which carry the relay batch's context).

    Its parent is the first message's context (the relay batch that published it), and it links
    to the other distinct contexts (at most :data:`MAX_BATCH_LINKS`), as the relay's batch span does.
    """
    fields = sorted(propagate.get_global_textmap().fields)
    parent: Context | None = None
    links: list[Link] = []
    seen: set[tuple[str | None, ...]] = set()
    for carrier in headers:
        found = carrier or {}
        key = tuple(found.get(field) for field in fields)
        if key in seen:
            continue  # a relay batch's messages share its context: extracted once
        seen.add(key)
        context = propagate.extract(dict(found))
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            continue
        if parent is None:
            parent = context
        elif len(links) < MAX_BATCH_LINKS:
            links.append(Link(span_context))
    with tracer(TRACER_NAME).start_as_current_span(
        f"{projection} apply batch",
        context=parent or Context(),
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.batch.message_count": len(events),
            "memsaga.projection": projection,
            "memsaga.first_position": events[0].position if events else 0,
            "memsaga.last_position": events[-1].position if events else 0,
        },
    ) as span:
        yield span


@contextmanager
def replay_span(projection: str, events: list[RecordedEvent]) -> Iterator[Span]:
    """``<projection> rebuild batch``, linked (not parented) to the traces of the events it
    replays (the first :data:`MAX_BATCH_LINKS` of them; events without a trace context cost no
    extraction)."""
    fields = propagate.get_global_textmap().fields
    links: list[Link] = []
    for event in events:
        if len(links) >= MAX_BATCH_LINKS:
            break
        if not event.metadata or fields.isdisjoint(event.metadata):
            continue
        context = trace.get_current_span(propagate.extract(event.metadata)).get_span_context()
        if context.is_valid:
            links.append(Link(context, {"memsaga.event_id": str(event.event_id)}))
    with tracer(TRACER_NAME).start_as_current_span(
        f"{projection} rebuild batch",
        links=links,
        attributes={"memsaga.projection": projection, "memsaga.event_count": len(events)},
    ) as span:
        yield span
