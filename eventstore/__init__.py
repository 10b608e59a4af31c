"""memsaga's event store: an append-only log of versioned events on PostgreSQL (asyncpg)."""

from eventstore.blobs import BlobStore, InMemoryBlobStore, PostgresBlobStore, sha256_hex
from eventstore.envelope import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    Backlog,
    Direction,
    EventPayload,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)
from eventstore.errors import (
    BlobNotFound,
    EventIdConflict,
    EventStoreError,
    InvalidEvent,
    InvalidPayload,
    InvalidQuery,
    MigrationChecksumMismatch,
    MigrationError,
    PartialDuplicate,
    PayloadTooLarge,
    UnknownEventType,
    WrongExpectedVersion,
)
from eventstore.memory import InMemoryEventStore
from eventstore.migrate import EVENTSTORE_MIGRATIONS, MigrationSource, migrate
from eventstore.pool import EventStoreConnection, create_pool
from eventstore.postgres import EventTail, PostgresEventStore
from eventstore.registry import SchemaRegistry
from eventstore.store import EventStore

__all__ = [
    "ANY",
    "EVENTSTORE_MIGRATIONS",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "Backlog",
    "BlobNotFound",
    "BlobStore",
    "Direction",
    "EventIdConflict",
    "EventPayload",
    "EventStore",
    "EventStoreConnection",
    "EventStoreError",
    "EventTail",
    "ExpectedVersion",
    "InMemoryBlobStore",
    "InMemoryEventStore",
    "InvalidEvent",
    "InvalidPayload",
    "InvalidQuery",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationSource",
    "NewEvent",
    "PartialDuplicate",
    "PayloadTooLarge",
    "PostgresBlobStore",
    "PostgresEventStore",
    "RecordedEvent",
    "SchemaRegistry",
    "StreamState",
    "UnknownEventType",
    "WrongExpectedVersion",
    "create_pool",
    "migrate",
    "sha256_hex",
]
