"""One trace from the append through the relay's publish to the projection's update."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import partial

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventstore import NO_STREAM, NewEvent, RecordedEvent
from projections import MEMORIES, ensure_built, list_memories
from projections.stream import ensure_stream
from projections.subjects import event_body, event_headers, event_subject
from projections.tracing import MAX_BATCH_LINKS, carries_trace, replay_span
from sagas.memory_extraction.events import MemoryCreated, memory_stream
from tests.projections.conftest import Env, applied, background, built, consumer_drained, wait_until
from tests.projections.counter import COUNTER
from tests.projections.histories import append_all, make_history


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


async def test_append_publish_and_apply_spans_share_one_trace(
    env: Env, span_exporter: InMemorySpanExporter
) -> None:
    memory = MemoryCreated(
        memory_id="m-trace",
        user_id="u-trace",
        episode_id="e-1",
        text="User likes tea",
        kind="preference",
        content_hash="0" * 64,
        vector_sha256=None,
        dimension=None,
        embedder=None,
        source="chat",
    )
    event = NewEvent.of(
        memory,
        correlation_id="corr-trace",
        causation_id="request-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        user_id="u-trace",
    )
    async with background() as bg:
        bg.start(env.runner(MEMORIES).run)
        await wait_until(partial(built, env.pool, MEMORIES.name), what="memories built", bg=bg)
        with trace.get_tracer("test").start_as_current_span("client request") as request:
            await env.store.append(memory_stream("m-trace"), [event], expected_version=NO_STREAM)
        bg.start(env.relay().run)

        async def projected() -> bool:
            return await applied(env.pool, MEMORIES.name) == 1

        await wait_until(projected, what="memory projected", bg=bg)
    assert [m.text for m in await list_memories(env.pool, "u-trace")] == ["User likes tea"]

    spans = list(span_exporter.get_finished_spans())
    append = _one(spans, "eventstore.append")
    publish = next(
        s
        for s in spans
        if s.name.startswith("publish ")
        and s.attributes
        and s.attributes.get("messaging.message.id") == str(event.event_id)
    )
    apply = _one(spans, "memories apply MemoryCreated")
    trace_id = request.get_span_context().trace_id
    assert {append.context.trace_id, publish.context.trace_id, apply.context.trace_id} == {trace_id}
    assert append.parent is not None and append.parent.span_id == request.get_span_context().span_id
    assert publish.parent is not None and publish.parent.span_id == append.context.span_id
    assert apply.parent is not None and apply.parent.span_id == publish.context.span_id
    assert apply.kind is trace.SpanKind.CONSUMER and publish.kind is trace.SpanKind.PRODUCER
    assert (
        apply.attributes is not None and apply.attributes["messaging.message.conversation_id"] == "corr-trace"
    )
    # The relay's batch span: a root of its own, linked to the request's trace; the publish span
    # links back to it.
    (batch,) = [s for s in spans if s.name == f"relay batch {env.stream}"]
    assert batch.parent is None and batch.kind is trace.SpanKind.PRODUCER
    assert [link.context.trace_id for link in batch.links] == [trace_id]
    assert [link.context.span_id for link in publish.links] == [batch.context.span_id]


async def test_events_without_a_trace_context_share_one_span_per_batch(
    env: Env, span_exporter: InMemorySpanExporter
) -> None:
    """An event stored with a trace context keeps its own handling span (a child of its publish
    span); the others of a fetched batch are covered by one batch span under the relay batch
    whose context their messages carry, and get no span each."""
    await ensure_built(env.pool, env.store, COUNTER)  # built empty: every event comes through NATS
    await append_all(env.store, make_history(seed=19, sagas=3))
    stored = [e async for batch in env.store.read_all() for e in batch]
    traced, untraced = stored[0], [e.model_copy(update={"metadata": {}}) for e in stored[1:]]
    assert carries_trace(traced) and not any(carries_trace(e) for e in untraced)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("publish traced") as publish:
        traced_headers = event_headers(traced)  # the stored context's fields, then the publish span's
        propagate.inject(traced_headers)
    with tracer.start_as_current_span("relay batch") as relay_batch:
        batch_context: dict[str, str] = {}
        propagate.inject(batch_context)
    await ensure_stream(env.js, env.stream, subject_prefix=env.prefix)
    for event, headers in [
        (traced, traced_headers),
        *((e, event_headers(e) | batch_context) for e in untraced),
    ]:
        await env.js.publish(
            event_subject(event, env.prefix), event_body(event), stream=env.stream, headers=headers
        )
    runner = env.runner(COUNTER, batch_size=4 * len(stored))
    span_exporter.clear()
    async with background() as bg:
        bg.start(runner.run)

        async def done() -> bool:
            return runner.stats.applied == len(stored) and await consumer_drained(env.js, env.stream, COUNTER)

        await wait_until(done, what="every message handled", bg=bg)
    assert runner.stats.batches == 1
    spans = list(span_exporter.get_finished_spans())
    handled = [
        s
        for s in spans
        if s.name.startswith(f"{COUNTER.name} apply ") and s.name != f"{COUNTER.name} apply batch"
    ]
    assert [s.attributes and s.attributes["messaging.message.id"] for s in handled] == [str(traced.event_id)]
    (own,) = handled
    assert own.parent is not None and own.parent.span_id == publish.get_span_context().span_id
    assert own.context.trace_id == publish.get_span_context().trace_id
    batch = _one(spans, f"{COUNTER.name} apply batch")
    assert batch.parent is not None and batch.parent.span_id == relay_batch.get_span_context().span_id
    assert batch.kind is trace.SpanKind.CONSUMER
    assert batch.attributes is not None and batch.attributes["messaging.batch.message_count"] == len(untraced)


NOW = datetime(2026, 1, 5, tzinfo=UTC)


def test_a_rebuild_batch_links_at_most_the_first_traces_and_skips_events_without_one(
    span_exporter: InMemorySpanExporter,
) -> None:
    traced = []
    for n in range(MAX_BATCH_LINKS + 5):
        with trace.get_tracer("tests").start_as_current_span(f"request {n}"):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        traced.append(carrier)
    events = [
        RecordedEvent(
            event_id=uuid.uuid4(),
            stream_id="s-1",
            version=n + 1,
            position=n + 1,
            event_type="T",
            event_version=1,
            stored_version=1,
            payload={},
            metadata=metadata,
            correlation_id="c",
            causation_id="c",
            user_id=None,
            occurred_at=NOW,
            recorded_at=NOW,
        )
        for n, metadata in enumerate([{}, *traced])
    ]
    span_exporter.clear()
    with replay_span("counter", events):
        pass
    [batch] = [s for s in span_exporter.get_finished_spans() if s.name == "counter rebuild batch"]
    assert len(batch.links) == MAX_BATCH_LINKS
    assert [link.attributes["memsaga.event_id"] for link in batch.links] == [
        str(e.event_id) for e in events[1 : MAX_BATCH_LINKS + 1]
    ]  # the untraced first event is skipped, the last five are not linked
