"""Causation trees: one request's events, each under the event that caused it.

Built from the event store (not from sampled spans), so a tree is complete however the traces
were sampled. The JSON form (``memsaga.trace/v1``) is stable for tools: see docs/tracing.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rich.text import Text
from rich.tree import Tree

from eventstore import RecordedEvent

TRACE_FORMAT = "memsaga.trace/v1"
COMPENSATING_TYPES = frozenset({"MemoryRetracted", "ExtractionCompensated", "CompensationFailed"})


@dataclass
class TraceNode:
    """One event and the events it caused."""

    event: RecordedEvent
    projections: list[str] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)

    @property
    def compensating(self) -> bool:
        """Whether the event undoes an earlier one."""
        return self.event.event_type in COMPENSATING_TYPES


def trace_id_of(event: RecordedEvent) -> str | None:
    """The OpenTelemetry trace id in the event's ``traceparent`` metadata, if any."""
    parts = str(event.metadata.get("traceparent", "")).split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


_SUMMARY_KEYS = ("text", "reason", "error")


def summary_of(event: RecordedEvent, width: int = 60) -> str | None:
    """A short human hint of what the event is about (a memory's text, a compensation's reason)."""
    for key in _SUMMARY_KEYS:
        value = event.payload.get(key)
        if isinstance(value, str) and value:
            return value if len(value) <= width else value[: width - 1] + "…"
    return None


def build_tree(
    events: Sequence[RecordedEvent], applied: Mapping[str, list[str]] | None = None
) -> list[TraceNode]:
    """Arrange events (any order) into causation trees; an event whose cause is not among them is a root.

    ``applied`` maps event ids to the projections that applied them.
    """
    ordered = sorted(events, key=lambda e: e.position)
    nodes = {str(e.event_id): TraceNode(e, sorted((applied or {}).get(str(e.event_id), []))) for e in ordered}
    roots: list[TraceNode] = []
    for event in ordered:
        node = nodes[str(event.event_id)]
        parent = nodes.get(event.causation_id)
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    return roots


def workflow_url(ui_base: str, namespace: str, workflow_id: str, run_id: str | None = None) -> str:
    """Deep link to a workflow in the Temporal UI: one run, or its latest without ``run_id``."""
    url = f"{ui_base.rstrip('/')}/namespaces/{quote(namespace, safe='')}"
    url += f"/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{quote(run_id, safe='')}" if run_id else url


def node_json(node: TraceNode, *, ui_base: str, namespace: str) -> dict[str, Any]:
    """The stable JSON of one node and its subtree."""
    event = node.event
    workflow_id = event.metadata.get("workflow_id")
    run_id = event.metadata.get("workflow_run_id")
    workflow = None
    if isinstance(workflow_id, str):
        workflow = {
            "workflow_id": workflow_id,
            "run_id": run_id,
            "url": workflow_url(ui_base, namespace, workflow_id, run_id if isinstance(run_id, str) else None),
        }
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "event_version": event.event_version,
        "stream_id": event.stream_id,
        "version": event.version,
        "position": event.position,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "summary": summary_of(event),
        "trace_id": trace_id_of(event),
        "workflow": workflow,
        "projections": node.projections,
        "compensating": node.compensating,
        "children": [node_json(child, ui_base=ui_base, namespace=namespace) for child in node.children],
    }


def trace_json(
    roots: list[TraceNode], *, correlation_id: str | None, ui_base: str, namespace: str
) -> dict[str, Any]:
    """The whole document: format tag, correlation id, event count and the trees."""

    def count(nodes: list[TraceNode]) -> int:
        return sum(1 + count(n.children) for n in nodes)

    return {
        "format": TRACE_FORMAT,
        "correlation_id": correlation_id,
        "events": count(roots),
        "roots": [node_json(r, ui_base=ui_base, namespace=namespace) for r in roots],
    }


def short_stream(stream_id: str) -> str:
    """``episode-704358de-a262-…`` as ``episode-704358de…``: enough to tell streams apart."""
    category, _, rest = stream_id.partition("-")
    return stream_id if len(rest) <= 12 else f"{category}-{rest[:8]}…"


def render_tree(roots: list[TraceNode], *, title: str) -> Tree:
    """A rich tree for the terminal; compensating events stand out in red.

    The trace id is shown where it differs from the parent's (usually once, at the root).
    """
    tree = Tree(Text(title, style="bold"))

    def add(branch: Tree, node: TraceNode, parent_trace: str | None) -> None:
        event = node.event
        style = "bold red" if node.compensating else "bold green" if not node.children else "bold"
        label = Text()
        label.append("↩ " if node.compensating else "", style="red")
        label.append(event.event_type, style=style)
        hint = summary_of(event, width=40)
        if hint:
            label.append(f" “{hint}”", style="italic")
        label.append(f" {short_stream(event.stream_id)}@{event.version} #{event.position}", style="cyan")
        label.append(f" {event.occurred_at.strftime('%H:%M:%S')}", style="dim")
        trace_id = trace_id_of(event)
        if trace_id and trace_id != parent_trace:
            label.append(f" trace {trace_id[:12]}…", style="magenta")
        if node.projections:
            label.append(f" ✓ {','.join(node.projections)}", style="green")
        child = branch.add(label)
        for grandchild in node.children:
            add(child, grandchild, trace_id)

    for root in roots:
        add(tree, root, None)
    return tree
