"""The local stack (PostgreSQL, NATS JetStream, Temporal dev server) from pip-installed binaries."""

from memsaga.devstack.databases import DatabaseFactory
from memsaga.devstack.errors import (
    BinaryNotFound,
    DevstackError,
    ServiceStartFailed,
    ServiceStartTimeout,
    ServiceUnreachable,
    StackConflict,
)
from memsaga.devstack.nats import probe_nats, start_nats
from memsaga.devstack.postgres import create_database, probe_postgres, start_postgres, with_database
from memsaga.devstack.stack import ServiceStatus, down, moved, probe, status, stop_service, up
from memsaga.devstack.temporal import (
    SEARCH_ATTRIBUTES,
    ensure_search_attributes,
    probe_temporal,
    start_temporal,
)

__all__ = [
    "SEARCH_ATTRIBUTES",
    "BinaryNotFound",
    "DatabaseFactory",
    "DevstackError",
    "ServiceStartFailed",
    "ServiceStartTimeout",
    "ServiceStatus",
    "ServiceUnreachable",
    "StackConflict",
    "create_database",
    "down",
    "ensure_search_attributes",
    "moved",
    "probe",
    "probe_nats",
    "probe_postgres",
    "probe_temporal",
    "start_nats",
    "start_postgres",
    "start_temporal",
    "status",
    "stop_service",
    "up",
    "with_database",
]
