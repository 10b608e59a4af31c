"""The saga's metrics, recorded by its activities (never by the workflow): attempts per activity,
outcomes and durations, read back through the session's ``InMemoryMetricReader``."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from temporalio.client import WorkflowFailureError

from memsaga.client import extraction_result
from tests.metric_points import histogram, total
from tests.workflows.support import SagaEnv, closed_port, request

SAGA = {"saga": "memory_extraction"}


async def test_a_completed_saga_counts_its_outcome_duration_and_attempts(
    saga_env: SagaEnv, metric_reader: InMemoryMetricReader
) -> None:
    completed = total(metric_reader, "memsaga.saga.outcomes", outcome="completed", **SAGA)
    durations, _, _ = histogram(metric_reader, "memsaga.saga.duration", outcome="completed", **SAGA)
    recorded = total(metric_reader, "memsaga.activity.attempts", activity="memory_extraction.record_episode")

    handle = await saga_env.start(request())
    assert (await extraction_result(saga_env.client, handle.workflow_id)).outcome == "completed"

    assert total(metric_reader, "memsaga.saga.outcomes", outcome="completed", **SAGA) == completed + 1
    count, seconds, _ = histogram(metric_reader, "memsaga.saga.duration", outcome="completed", **SAGA)
    assert count == durations + 1 and seconds > 0
    assert (
        total(metric_reader, "memsaga.activity.attempts", activity="memory_extraction.record_episode")
        == recorded + 1
    )


async def test_a_compensated_saga_counts_its_outcome_and_the_retried_attempt(
    saga_env: SagaEnv, metric_reader: InMemoryMetricReader
) -> None:
    embed = {"activity": "memory_extraction.embed_candidates"}
    compensated = total(metric_reader, "memsaga.saga.outcomes", outcome="compensated", **SAGA)
    retries = total(metric_reader, "memsaga.activity.attempts", retry=True, **embed)

    broken = request(embedder="http", embedder_base_url=f"http://127.0.0.1:{closed_port()}/v1")
    handle = await saga_env.start(broken)
    with pytest.raises(WorkflowFailureError):
        await extraction_result(saga_env.client, handle.workflow_id)

    assert total(metric_reader, "memsaga.saga.outcomes", outcome="compensated", **SAGA) == compensated + 1
    assert total(metric_reader, "memsaga.activity.attempts", retry=True, **embed) == retries + 1
    _, _, highest = histogram(metric_reader, "memsaga.activity.attempt", **embed)
    assert highest >= 2
