"""The relay's and the runners' OpenTelemetry metrics (names, units and attributes: docs/tracing.md).

Instruments come from the global meter provider (``memsaga.telemetry.setup_metrics`` installs
one per process); until one is installed they are no-ops, and the relay skips the one query
its lag needs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from nats.aio.msg import Msg
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

from eventstore import PostgresEventStore

_meter = metrics.get_meter("memsaga.projections")

RELAY_LAG = _meter.create_gauge(
    "memsaga.relay.lag", unit="{event}", description="events in the store after the relay's checkpoint"
)
RELAY_PUBLISHED = _meter.create_counter(
    "memsaga.relay.published",
    unit="{event}",
    description="events JetStream acknowledged (duplicate: dropped)",
)
GAP_WAITS = _meter.create_counter(
    "memsaga.relay.gap_waits", unit="{gap}", description="times the relay stopped at a commit-order gap"
)
GAP_WAIT_DURATION = _meter.create_histogram(
    "memsaga.relay.gap_wait.duration",
    unit="s",
    description="how long the relay waited at a commit-order gap, recorded when it passed it",
    explicit_bucket_boundaries_advisory=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
)
GAP_WAIT_CURRENT = _meter.create_gauge(
    "memsaga.relay.gap_wait.current", unit="s", description="how long the relay waits at a gap now (0: none)"
)
PROJECTION_LAG = _meter.create_gauge(
    "memsaga.projection.lag",
    unit="{event}",
    description="messages of the projection's consumer not yet delivered (JetStream's num_pending)",
)
PROJECTION_APPLIED = _meter.create_counter(
    "memsaga.projection.applied", unit="{event}", description="events applied to the read model"
)
PROJECTION_PARKED = _meter.create_counter(
    "memsaga.projection.parked", unit="{event}", description="events parked after their last delivery"
)
PROJECTION_REDELIVERIES = _meter.create_counter(
    "memsaga.projection.redeliveries", unit="{message}", description="messages delivered more than once"
)

LAG_SAMPLE_SECONDS = 1.0
"""The relay reads the store's head for its lag at most this often."""


def recording() -> bool:
    """Whether a meter provider is installed (else measurements are dropped anyway)."""
    return isinstance(metrics.get_meter_provider(), MeterProvider)


class RelayMetrics:
    """What one relay records: lag, published events and the waits at commit-order gaps."""

    def __init__(self, stream: str) -> None:
        self._attributes = {"stream": stream}
        self._gap_since: float | None = None
        self._lag_at = 0.0

    def polled(self, waiting_on_gap: bool) -> None:
        """After each read of the tail: a wait at a gap begins, goes on or ends."""
        now = time.monotonic()
        if waiting_on_gap and self._gap_since is None:
            self._gap_since = now
            GAP_WAITS.add(1, self._attributes)
        elif not waiting_on_gap and self._gap_since is not None:
            GAP_WAIT_DURATION.record(now - self._gap_since, self._attributes)
            self._gap_since = None
        GAP_WAIT_CURRENT.set(0.0 if self._gap_since is None else now - self._gap_since, self._attributes)

    def published(self, events: int, duplicates: int) -> None:
        """A batch JetStream acknowledged."""
        RELAY_PUBLISHED.add(events - duplicates, {**self._attributes, "duplicate": False})
        if duplicates:
            RELAY_PUBLISHED.add(duplicates, {**self._attributes, "duplicate": True})

    async def lag(self, store: PostgresEventStore, position: int) -> None:
        """The store's head minus ``position`` (one query, at most every :data:`LAG_SAMPLE_SECONDS`)."""
        now = time.monotonic()
        if now - self._lag_at < LAG_SAMPLE_SECONDS or not recording():
            return
        self._lag_at = now
        RELAY_LAG.set(max(await store.head_position() - position, 0), self._attributes)


class ProjectionMetrics:
    """What one runner records per batch: lag, applied, parked and redelivered messages."""

    def __init__(self, projection: str) -> None:
        self._attributes = {"projection": projection}

    def batch(self, msgs: Sequence[Msg], *, applied: int, parked: int) -> None:
        """A batch settled: ``applied`` events applied, ``parked`` parked."""
        PROJECTION_APPLIED.add(applied, self._attributes)
        if parked:
            PROJECTION_PARKED.add(parked, self._attributes)
        redelivered = sum(1 for m in msgs if (m.metadata.num_delivered or 1) > 1)
        if redelivered:
            PROJECTION_REDELIVERIES.add(redelivered, self._attributes)
        pending = [m.metadata.num_pending for m in msgs if m.metadata.num_pending is not None]
        if pending:
            PROJECTION_LAG.set(min(pending), self._attributes)  # the latest delivery's count

    def caught_up(self) -> None:
        """A fetch found nothing: no message is pending."""
        PROJECTION_LAG.set(0, self._attributes)
