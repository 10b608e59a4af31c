"""The ``memories`` read model: each user's current memories; retracted ones are gone.

One row per memory id. Disorder-safe by the memory stream's version: ``MemoryCreated``
(version 1) fills the creation fields whenever it arrives; ``MemoryRetracted`` (version 2)
marks the row retracted, creating a tombstone when it arrives first, and only moves state
forward (``version`` is the highest stream version applied), so a late older event never
resurrects a retracted memory. ``created_at`` is when the creation happened (the event's
``occurred_at``), never the time of projecting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import Projection, Tables, payload_of
from projections.errors import ProjectionNotInitialized
from sagas.memory_extraction.events import MemoryCreated, MemoryRetracted

DDL = """
CREATE TABLE {memories} (
    memory_id          text        PRIMARY KEY,
    user_id            text        NOT NULL,
    text               text,
    kind               text,
    content_hash       text,
    episode_id         text,
    source             text,
    sensitive          boolean,
    vector_sha256      text,
    version            bigint      NOT NULL,
    correlation_id     text,
    created_event_id   uuid,
    created_at         timestamptz,
    retracted          boolean     NOT NULL DEFAULT false,
    retracted_at       timestamptz,
    retraction_reason  text
);
CREATE INDEX ON {memories} (user_id, created_at) WHERE NOT retracted;
"""


_CREATED = """INSERT INTO {memories} AS m (memory_id, user_id, text, kind, content_hash, episode_id,
        source, sensitive, vector_sha256, version, correlation_id, created_event_id, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (memory_id) DO UPDATE SET
        user_id = EXCLUDED.user_id, text = EXCLUDED.text, kind = EXCLUDED.kind,
        content_hash = EXCLUDED.content_hash, episode_id = EXCLUDED.episode_id,
        source = EXCLUDED.source, sensitive = EXCLUDED.sensitive,
        vector_sha256 = EXCLUDED.vector_sha256, correlation_id = EXCLUDED.correlation_id,
        created_event_id = EXCLUDED.created_event_id, created_at = EXCLUDED.created_at,
        version = greatest(m.version, EXCLUDED.version)"""

_RETRACTED = """INSERT INTO {memories} AS m
        (memory_id, user_id, version, retracted, retracted_at, retraction_reason)
    VALUES ($1, $2, $3, true, $4, $5)
    ON CONFLICT (memory_id) DO UPDATE SET
        version = EXCLUDED.version, retracted = true,
        retracted_at = EXCLUDED.retracted_at, retraction_reason = EXCLUDED.retraction_reason
    WHERE m.version < EXCLUDED.version"""


def _created_args(event: RecordedEvent) -> tuple[object, ...]:
    p = payload_of(event, MemoryCreated)
    return (
        p.memory_id,
        p.user_id,
        p.text,
        p.kind,
        p.content_hash,
        p.episode_id,
        p.source,
        p.sensitive,
        p.vector_sha256,
        event.version,
        event.correlation_id,
        event.event_id,
        event.occurred_at,
    )


def _retracted_args(event: RecordedEvent) -> tuple[object, ...]:
    p = payload_of(event, MemoryRetracted)
    return (p.memory_id, p.user_id, event.version, event.occurred_at, p.reason)


async def on_memory_created(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """Fill the memory's creation fields; its state (retracted, version) only moves forward."""
    await conn.execute(_CREATED.format(memories=tables["memories"]), *_created_args(event))


async def on_memories_created(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """:func:`on_memory_created` for each event in turn, in one round trip (``executemany``)."""
    await conn.executemany(_CREATED.format(memories=tables["memories"]), [_created_args(e) for e in events])


async def on_memory_retracted(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """Retract the memory (a tombstone if its creation has not arrived yet)."""
    await conn.execute(_RETRACTED.format(memories=tables["memories"]), *_retracted_args(event))


async def on_memories_retracted(conn: Connection, tables: Tables, events: Sequence[RecordedEvent]) -> None:
    """:func:`on_memory_retracted` for each event in turn, in one round trip (``executemany``)."""
    await conn.executemany(
        _RETRACTED.format(memories=tables["memories"]), [_retracted_args(e) for e in events]
    )


MEMORIES = Projection.declare(
    "memories",
    version=1,
    tables=("memories",),
    ddl=DDL,
    handlers={MemoryCreated: on_memory_created, MemoryRetracted: on_memory_retracted},
    batch_handlers={MemoryCreated: on_memories_created, MemoryRetracted: on_memories_retracted},
    description="each user's current memories (retracted ones gone)",
)


class Memory(BaseModel):
    """A user's memory as the read model holds it."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    user_id: str
    text: str
    kind: str
    version: int
    correlation_id: str
    created_at: datetime
    episode_id: str | None
    source: str | None
    sensitive: bool


async def list_memories(pool: asyncpg.Pool, user_id: str) -> list[Memory]:
    """A user's current memories, oldest first.

    :raises ProjectionNotInitialized: the memories projection never ran.
    """
    view = MEMORIES.views()["memories"]
    try:
        rows = await pool.fetch(
            f"""SELECT memory_id, user_id, text, kind, version, correlation_id, created_at, episode_id,
                       source, coalesce(sensitive, false) AS sensitive
                FROM {view} WHERE user_id = $1 AND NOT retracted AND created_at IS NOT NULL
                ORDER BY created_at, memory_id""",
            user_id,
        )
    except asyncpg.UndefinedTableError:
        raise ProjectionNotInitialized(MEMORIES.name) from None
    return [Memory(**dict(r)) for r in rows]
