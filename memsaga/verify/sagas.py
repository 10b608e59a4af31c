"""Sagas that are not terminal for longer than a threshold.

Two views: the ``extractions`` read model (every saga that recorded an event; its last
event's time) and Temporal's visibility (every running ``MemoryExtraction`` workflow, also one
that never recorded anything). A saga waiting for a human review is not stuck: it is
counted, not reported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.client import Client

from memsaga.verify.report import SagaEntry, SagasCheck
from projections.errors import ProjectionNotInitialized
from projections.extractions import Extraction, list_extractions
from workflows.memory_extraction import CORRELATION_ID, MemoryExtraction

TERMINAL = frozenset({"completed", "compensated", "failed"})
"""Statuses of the extractions read model after which a saga changes nothing any more."""
ALL_ROWS = 10_000_000


def waiting_for_review(extraction: Extraction) -> bool:
    """Whether the saga asked for a review and no decision has come yet."""
    return extraction.status == "reviewing" and extraction.review_outcome is None


async def check_sagas(
    pool: asyncpg.Pool, client: Client | None, *, stuck_after: float, why_no_temporal: str | None
) -> SagasCheck:
    """Sagas not terminal for longer than ``stuck_after`` seconds (``client`` None: the read model only)."""
    now = datetime.now(UTC)
    limit = now - timedelta(seconds=stuck_after)
    try:
        rows = {e.correlation_id: e for e in await list_extractions(pool, limit=ALL_ROWS)}
    except ProjectionNotInitialized:
        rows = {}  # never built: its lag is the positions check's; Temporal's view still counts
    open_rows = [e for e in rows.values() if e.status not in TERMINAL]
    reviewing = [e for e in open_rows if waiting_for_review(e)]
    stuck = [
        SagaEntry(
            correlation_id=e.correlation_id,
            status=e.status,
            since=e.updated_at,
            age_seconds=round((now - e.updated_at).total_seconds(), 1),
            source="read_model",
        )
        for e in open_rows
        if not waiting_for_review(e) and e.updated_at < limit
    ]
    running = len(open_rows)
    if client is not None:
        seen = {s.correlation_id for s in stuck}
        query = (
            f'WorkflowType = "{MemoryExtraction.__name__}" AND ExecutionStatus = "Running"'
            f' AND StartTime < "{limit.isoformat()}"'
        )
        async for wf in client.list_workflows(query):
            correlation = wf.typed_search_attributes.get(CORRELATION_ID) or wf.id
            row = rows.get(correlation)
            if correlation in seen or (row is not None and row.status not in TERMINAL):
                continue  # judged by its read-model row (a waiting review included)
            stuck.append(
                SagaEntry(
                    correlation_id=correlation,
                    status="running" if row is None else f"running ({row.status} in the read model)",
                    since=wf.start_time,
                    age_seconds=None
                    if wf.start_time is None
                    else round((now - wf.start_time).total_seconds(), 1),
                    source="temporal",
                )
            )
    return SagasCheck(
        stuck_after_seconds=stuck_after,
        running=running,
        waiting_for_review=len(reviewing),
        stuck=sorted(stuck, key=lambda s: s.correlation_id),
        temporal=why_no_temporal,
    )
