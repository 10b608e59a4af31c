"""Projections: the outbox relay to NATS JetStream and the read models built from events.

PostgreSQL is the source of truth; JetStream is only the transport. See docs/projections.md.
"""

from projections.base import READ_SCHEMA, Handler, Projection, Tables, find_projection, payload_of
from projections.dlq import RetryResult, drop_parked, retry_parked
from projections.errors import (
    AmbiguousParkedEvent,
    ExtensionMissing,
    NatsUnavailable,
    ParkedEventNotFound,
    ParkedEventNotRetryable,
    ProjectionCodeMismatch,
    ProjectionNotInitialized,
    ProjectionsError,
    RebuildInProgress,
    RebuildStalled,
    StreamHasLimits,
    StreamReplicasUnavailable,
    StreamSubjectsMismatch,
    UnknownProjection,
)
from projections.extractions import EXTRACTIONS, Extraction, TimelineEntry, get_extraction, list_extractions
from projections.memories import MEMORIES, Memory, list_memories
from projections.memory_search import MEMORY_SEARCH, SearchHit, SearchMode, SearchQuery, search
from projections.parked import ParkedEvent, list_parked
from projections.rebuild import RebuildProgress, RebuildResult, ensure_built, ensure_current, rebuild
from projections.relay import Relay, RelayConfig, RelayStats
from projections.runner import ProjectionRunner, RunnerConfig, RunnerStats
from projections.stream import (
    DEFAULT_STREAM,
    connect_nats,
    ensure_stream,
    server_urls,
    stream_config,
    stream_limits,
)

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (MEMORIES, EXTRACTIONS, MEMORY_SEARCH)}
"""Every read model memsaga ships, by name."""

__all__ = [
    "DEFAULT_STREAM",
    "EXTRACTIONS",
    "MEMORIES",
    "MEMORY_SEARCH",
    "PROJECTIONS",
    "READ_SCHEMA",
    "AmbiguousParkedEvent",
    "ExtensionMissing",
    "Extraction",
    "Handler",
    "Memory",
    "NatsUnavailable",
    "ParkedEvent",
    "ParkedEventNotFound",
    "ParkedEventNotRetryable",
    "Projection",
    "ProjectionCodeMismatch",
    "ProjectionNotInitialized",
    "ProjectionRunner",
    "ProjectionsError",
    "RebuildInProgress",
    "RebuildProgress",
    "RebuildResult",
    "RebuildStalled",
    "Relay",
    "RelayConfig",
    "RelayStats",
    "RetryResult",
    "RunnerConfig",
    "RunnerStats",
    "SearchHit",
    "SearchMode",
    "SearchQuery",
    "StreamHasLimits",
    "StreamReplicasUnavailable",
    "StreamSubjectsMismatch",
    "Tables",
    "TimelineEntry",
    "UnknownProjection",
    "connect_nats",
    "drop_parked",
    "ensure_built",
    "ensure_current",
    "ensure_stream",
    "find_projection",
    "get_extraction",
    "list_extractions",
    "list_memories",
    "list_parked",
    "payload_of",
    "rebuild",
    "retry_parked",
    "search",
    "server_urls",
    "stream_config",
    "stream_limits",
]
