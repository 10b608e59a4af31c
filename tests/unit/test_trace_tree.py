"""Causation trees built from events (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from rich.console import Console

from eventstore import InMemoryEventStore, NewEvent, RecordedEvent
from eventstore import tracing as eventstore_tracing
from memsaga.trace import build_tree, render_tree, trace_json
from tests.eventstore.schemas import Noted, make_registry

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _untraced_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the traceparent a test sets itself: whatever provider another test installed."""
    noop = trace.NoOpTracerProvider()
    monkeypatch.setattr(eventstore_tracing.trace, "get_tracer", lambda name: noop.get_tracer(name))


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(text: str, cause: str, **metadata: str) -> NewEvent:
    return NewEvent.of(
        Noted(text=text), correlation_id="corr", causation_id=cause, occurred_at=WHEN, metadata=metadata
    )


async def _recorded() -> list[RecordedEvent]:
    store = InMemoryEventStore(make_registry())
    root = _event(
        "root", "request-1", traceparent=TRACEPARENT, workflow_id="extract-1", workflow_run_id="run-9"
    )
    left = _event("left", str(root.event_id))
    leaf = _event("leaf", str(left.event_id))
    right = _event("right", str(root.event_id))
    await store.append("note-a", [root, left])
    await store.append("note-b", [right, leaf])
    return await store.read_correlation("corr")


async def test_events_hang_under_their_causes_in_position_order() -> None:
    events = await _recorded()
    roots = build_tree(list(reversed(events)))  # input order does not matter
    assert len(roots) == 1
    root = roots[0]
    assert root.event.payload["text"] == "root"
    assert [c.event.payload["text"] for c in root.children] == ["left", "right"]
    assert [c.event.payload["text"] for c in root.children[0].children] == ["leaf"]


async def test_json_is_the_documented_shape() -> None:
    events = await _recorded()
    applied = {str(events[0].event_id): ["memories", "extractions"]}
    doc = trace_json(
        build_tree(events, applied), correlation_id="corr", ui_base="http://ui:8233/", namespace="default"
    )
    assert doc["format"] == "memsaga.trace/v1" and doc["events"] == 4
    root = doc["roots"][0]
    assert root["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert root["workflow"] == {
        "workflow_id": "extract-1",
        "run_id": "run-9",
        "url": "http://ui:8233/namespaces/default/workflows/extract-1/run-9",
    }
    assert root["projections"] == ["extractions", "memories"]
    assert root["children"][0]["workflow"] is None and root["children"][0]["trace_id"] is None
    assert (root["stream_id"], root["version"], root["compensating"]) == ("note-a", 1, False)
    json.dumps(doc)  # serialisable as is


async def test_terminal_tree_lists_every_event() -> None:
    events = await _recorded()
    console = Console(record=True, width=200)
    console.print(render_tree(build_tree(events), title="corr"))
    text = console.export_text()
    for word in ("root", "note-a@1", "note-b@2", "trace 0af7651916cd"):
        assert word in text
    assert text.count("Noted") == 4


def test_long_stream_ids_are_shortened_for_the_terminal() -> None:
    from memsaga.trace import short_stream

    assert short_stream("episode-704358de-a262-55ac-9e55-9bdbf35e0005") == "episode-704358de…"
    assert short_stream("note-a") == "note-a"
