"""A request's causation tree loaded from the event store, with the projections that applied each event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore import RecordedEvent
from memsaga.bootstrap import build_stores, create_pool
from memsaga.errors import NotFound
from memsaga.settings import Settings
from memsaga.trace import TraceNode, build_tree, trace_json
from projections.tracking import projections_that_applied
from sagas.memory_extraction.domain import episode_id_for
from sagas.memory_extraction.events import episode_stream


@dataclass(frozen=True)
class LoadedTrace:
    """A trace as a JSON document and as trees (for the terminal)."""

    document: dict[str, Any]
    roots: list[TraceNode]


async def applied_by(pool: asyncpg.Pool, events: list[RecordedEvent]) -> dict[str, list[str]]:
    """Which projections (active read-model versions) have applied each event."""
    applied = await projections_that_applied(pool, [e.event_id for e in events])
    return {str(event_id): names for event_id, names in applied.items()}


async def load_trace(
    settings: Settings, correlation_id: str | None, event_id: uuid.UUID | None
) -> LoadedTrace:
    """The ``memsaga.trace/v1`` document for a correlation id or an event's descendants.

    :raises NotFound: nothing matches.
    """
    pool = await create_pool(settings, max_size=2)
    try:
        return await trace_on(pool, settings, correlation_id, event_id)
    finally:
        await pool.close()


async def trace_on(
    pool: asyncpg.Pool, settings: Settings, correlation_id: str | None, event_id: uuid.UUID | None
) -> LoadedTrace:
    """:func:`load_trace` on a pool the caller already has (for callers that poll).

    ``correlation_id`` may also be a saga's workflow id (``extract-…``), whatever correlation id
    it was started with: its episode stream (whose id derives from the workflow id) names it.

    :raises NotFound: nothing matches.
    """
    store, _ = build_stores(pool, settings)
    if event_id is not None:
        events = await store.read_causation(event_id)
        if not events:
            raise NotFound(f"no event {event_id} in the event store")
        correlation_id = events[0].correlation_id
    else:
        assert correlation_id is not None
        events = await store.read_correlation(correlation_id)
        if not events:
            episode = await store.read_stream(episode_stream(episode_id_for(correlation_id)), limit=1)
            if episode:
                correlation_id = episode[0].correlation_id
                events = await store.read_correlation(correlation_id)
        if not events:
            raise NotFound(
                f"no events with correlation id or workflow id {correlation_id!r}: check the id "
                "(`memsaga extract` prints both), or wait for the saga's first step"
            )
    roots = build_tree(events, await applied_by(pool, events))
    document = trace_json(
        roots,
        correlation_id=correlation_id,
        ui_base=settings.temporal_ui(),
        namespace=settings.temporal_namespace,
    )
    return LoadedTrace(document, roots)
