"""One request, end to end: one trace from the client to the read model, and the causation
tree `memsaga trace --json` shows for it (completed and compensated)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import WorkflowFailureError

from memsaga.client import ExtractionHandle, extraction_result, start_extraction
from memsaga.errors import NotFound
from memsaga.trace_loader import load_trace
from projections import list_memories
from sagas.memory_extraction.domain import ExtractionRequest, ExtractionResult
from tests.e2e.conftest import Stack
from tests.workflows.support import EPISODE, closed_port, eventually, request

STEPS = (
    "record_episode",
    "extract_candidates",
    "embed_candidates",
    "deduplicate_candidates",
    "reconcile_candidates",
    "store_memories",
)


def node(
    event_type: str, stream: str, version: int, *children: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "stream": stream,
        "version": version,
        "compensating": extra.get("compensating", False),
        "projections": extra.get("projections", []),
        "children": list(children),
    }


def memory() -> dict[str, Any]:
    return node("MemoryCreated", "memory", 1, projections=["memories"])


# The saga's spec, as a causation tree: each episode event caused by the one before it; the
# memories and the completion caused by the reconcile decision (EPISODE holds three plain facts).
COMPLETED = node("ExtractionRequested", "episode", 1,
    node("EpisodeRecorded", "episode", 2,
        node("CandidatesExtracted", "episode", 3,
            node("CandidatesEmbedded", "episode", 4,
                node("CandidatesDeduplicated", "episode", 5,
                    node("CandidatesReconciled", "episode", 6,
                        memory(), memory(), memory(),
                        node("ExtractionCompleted", "episode", 7)))))))  # fmt: skip

# The embedder fails for good: nothing was stored, so the compensation has nothing to retract
# and records why, under the last fact it undoes.
COMPENSATED = node("ExtractionRequested", "episode", 1,
    node("EpisodeRecorded", "episode", 2,
        node("CandidatesExtracted", "episode", 3,
            node("ExtractionCompensated", "episode", 4, compensating=True))))  # fmt: skip


def shape(tree: dict[str, Any]) -> dict[str, Any]:
    return node(
        tree["event_type"],
        tree["stream_id"].split("-", 1)[0],
        tree["version"],
        *(shape(child) for child in tree["children"]),
        compensating=tree["compensating"],
        projections=tree["projections"],
    )


def walk(tree: dict[str, Any]) -> list[dict[str, Any]]:
    return [tree, *(n for child in tree["children"] for n in walk(child))]


async def run(
    stack: Stack, extraction: ExtractionRequest
) -> tuple[ExtractionHandle, ExtractionResult | None, int]:
    """Start from a client span; wait for the result and for the memories in the read model."""
    with trace.get_tracer("tests").start_as_current_span("client request") as span:
        handle = await start_extraction(stack.client, extraction, settings=stack.settings, blobs=stack.blobs)
        try:
            result: ExtractionResult | None = await extraction_result(stack.client, handle.workflow_id)
        except WorkflowFailureError:
            result = None
    wanted = len(result.memory_ids) if result else 0

    async def projected() -> bool | None:
        return len(await list_memories(stack.pool, handle.user_id)) == wanted or None

    await eventually(projected, 30, "memories in the read model")
    return handle, result, span.get_span_context().trace_id


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_extraction_is_one_trace_from_client_to_read_model(
    stack: Stack, span_exporter: InMemorySpanExporter
) -> None:
    _, result, trace_id = await run(stack, request(EPISODE))
    assert result is not None and len(result.memory_ids) == 3

    async def all_ended() -> bool | None:
        # The relay ends a publish span once JetStream acked its batch, which may come after
        # the memories were applied: wait for the last events' publish spans as well.
        spans = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]
        applied = sum(s.name == "memories apply MemoryCreated" for s in spans)
        published = sum(s.name.startswith("publish ") for s in spans)
        return (applied == 3 and published >= 10) or None

    await eventually(all_ended, 10, "apply spans and publish spans")
    spans = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in spans}
    names = [s.name for s in spans]
    assert "StartWorkflow:MemoryExtraction" in names and "RunWorkflow:MemoryExtraction" in names
    for step in STEPS:
        assert f"RunActivity:memory_extraction.{step}" in names, step
    appends = [s for s in spans if s.name == "eventstore.append"]
    publishes = [s for s in spans if s.name.startswith("publish ")]
    applies = [s for s in spans if s.name == "memories apply MemoryCreated"]
    assert len(appends) >= 7 and len(publishes) == 10 and len(applies) == 3
    # Every projection update hangs under publish -> append -> the activity -> the client's start.
    for apply in applies:
        chain = ancestors(apply, by_id)
        assert chain[0].startswith("publish ") and chain[1] == "eventstore.append"
        assert "RunActivity:memory_extraction.store_memories" in chain
        assert chain[-2:] == ["StartWorkflow:MemoryExtraction", "client request"]
    assert all(any(a.startswith("RunActivity:") for a in ancestors(s, by_id)) for s in appends)


async def test_trace_json_of_a_completed_run_is_the_expected_tree(stack: Stack) -> None:
    handle, result, trace_id = await run(stack, request(EPISODE))
    assert result is not None
    document = (await load_trace(stack.settings, handle.correlation_id, None)).document
    assert document["format"] == "memsaga.trace/v1" and document["correlation_id"] == handle.correlation_id
    assert document["events"] == 10
    (root,) = document["roots"]
    assert shape(root) == COMPLETED
    nodes = walk(root)
    assert {n["trace_id"] for n in nodes} == {f"{trace_id:032x}"}
    episode_nodes = [n for n in nodes if n["stream_id"].startswith("episode-")]
    for n in episode_nodes:
        assert n["workflow"]["workflow_id"] == handle.workflow_id
        assert n["workflow"]["url"] == handle.url
    assert sorted(n["summary"] for n in nodes if n["event_type"] == "MemoryCreated") == [
        "User lives in Lisbon",
        "User loves hiking",
        "User's sister Ana is a nurse",
    ]


async def test_a_trace_is_found_by_workflow_id_whatever_the_correlation_id(stack: Stack) -> None:
    custom = request(EPISODE).model_copy(update={"correlation_id": f"chat-{uuid.uuid4().hex[:8]}"})
    handle, result, _ = await run(stack, custom)
    assert result is not None and handle.correlation_id != handle.workflow_id

    by_workflow = (await load_trace(stack.settings, handle.workflow_id, None)).document

    assert by_workflow["correlation_id"] == handle.correlation_id and by_workflow["events"] == 10
    with pytest.raises(NotFound, match="correlation id or workflow id"):
        await load_trace(stack.settings, "extract-never-started", None)


async def test_trace_json_of_a_compensated_run_is_the_expected_tree(stack: Stack) -> None:
    failing = request(EPISODE, embedder="http", embedder_base_url=f"http://127.0.0.1:{closed_port()}")
    handle, result, _ = await run(stack, failing)
    assert result is None
    document = (await load_trace(stack.settings, handle.correlation_id, None)).document
    (root,) = document["roots"]
    assert shape(root) == COMPENSATED
    compensation = walk(root)[-1]
    events = await stack.store.read_correlation(handle.correlation_id)
    compensated = next(e for e in events if e.event_type == "ExtractionCompensated")
    assert compensation["event_id"] == str(compensated.event_id)
    assert compensated.payload["failed_step"] == "embed"


async def test_trace_below_one_event_is_its_subtree(stack: Stack) -> None:
    handle, result, _ = await run(stack, request(EPISODE))
    assert result is not None
    events = await stack.store.read_correlation(handle.correlation_id)
    dedup = next(e for e in events if e.event_type == "CandidatesDeduplicated")
    document = (await load_trace(stack.settings, None, dedup.event_id)).document
    (root,) = document["roots"]
    assert shape(root) == COMPLETED["children"][0]["children"][0]["children"][0]["children"][0]
