"""The activities' OpenTelemetry metrics: attempts, and the saga outcomes and durations.

Saga outcomes are recorded here, by the activity that appends the saga's last event, not by
the workflow: workflow code must stay deterministic (it is replayed, so it would count again on
every replay), while an activity runs once per attempt and only outside the sandbox. Names,
units and attributes: docs/tracing.md (*Metrics*).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from eventstore import EventStore
from sagas.memory_extraction.domain import Envelope
from sagas.memory_extraction.events import episode_stream

log = logging.getLogger(__name__)
R = TypeVar("R")

SAGA = "memory_extraction"

_meter = metrics.get_meter("memsaga.activities")

ATTEMPTS = _meter.create_counter(
    "memsaga.activity.attempts", unit="{attempt}", description="activity executions; retry: not the first"
)
ATTEMPT = _meter.create_histogram(
    "memsaga.activity.attempt",
    unit="{attempt}",
    description="the attempt number of each activity execution (activity.info().attempt)",
    explicit_bucket_boundaries_advisory=[1, 2, 3, 5, 10, 20, 50, 100, 1000],
)
SAGA_OUTCOMES = _meter.create_counter(
    "memsaga.saga.outcomes", unit="{saga}", description="sagas ended, by the event that ended them"
)
SAGA_DURATION = _meter.create_histogram(
    "memsaga.saga.duration",
    unit="s",
    description="from the saga's first event to its last (workflow time)",
    explicit_bucket_boundaries_advisory=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400],
)


class AttemptMetrics(Interceptor):
    """A worker interceptor counting each activity execution as an attempt of its type
    (``build_worker`` registers it)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingAttempts(next)


class _CountingAttempts(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        attributes = {"activity": info.activity_type}
        ATTEMPTS.add(1, {**attributes, "retry": info.attempt > 1})
        ATTEMPT.record(info.attempt, attributes)
        return await self.next.execute_activity(input)


class _Terminal(Protocol):
    envelope: Envelope
    episode_id: str


class _Activities(Protocol):
    store: EventStore


def records_outcome(
    outcome: str,
) -> Callable[[Callable[[Any, Any], Awaitable[R]]], Callable[[Any, Any], Awaitable[R]]]:
    """An activity that ends the saga as ``outcome`` (``completed``, ``compensated``,
    ``compensation_failed``) counts it, with the saga's duration, once it has succeeded.

    A result whose ``event_id`` is None (nothing was recorded) counts nothing. An activity
    retried after it succeeded (its worker lost before it reported) counts again. A saga that
    failed before it recorded anything has no duration (only its compensation wrote events).
    """

    def wrap(fn: Callable[[Any, Any], Awaitable[R]]) -> Callable[[Any, Any], Awaitable[R]]:
        @functools.wraps(fn)
        async def recorded(self: _Activities, input: _Terminal) -> R:
            result = await fn(self, input)
            if getattr(result, "event_id", None) is not None and isinstance(
                metrics.get_meter_provider(), MeterProvider
            ):
                await _record_outcome(self.store, outcome, input)
            return result

        return recorded

    return wrap


async def _record_outcome(store: EventStore, outcome: str, input: _Terminal) -> None:
    attributes = {"saga": SAGA, "outcome": outcome}
    SAGA_OUTCOMES.add(1, attributes)
    try:  # the saga's first event says when it began; a failed read must not fail the saga's end
        first = await store.read_stream(episode_stream(input.episode_id), limit=1)
    except Exception as exc:
        log.debug("no saga duration for %s: %r", input.episode_id, exc)
        return
    # Its first event written by this very step (a saga that failed before it recorded anything):
    # when it began is not known here, so no duration.
    if first and first[0].occurred_at < input.envelope.occurred_at:
        seconds = (input.envelope.occurred_at - first[0].occurred_at).total_seconds()
        SAGA_DURATION.record(seconds, attributes)
