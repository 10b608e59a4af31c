"""Test projections: a counter whose effect is NOT idempotent by itself (so a doubled
application shows), and one whose handler chokes on some events (for the DLQ)."""

from __future__ import annotations

import asyncio
import os

from eventstore import RecordedEvent
from eventstore.postgres import Connection
from projections.base import Handler, Projection, Tables, payload_of
from sagas.memory_extraction.events import ALL_EVENTS, MemoryCreated

COUNTER_DDL = """
CREATE TABLE {counter} (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO {counter} VALUES (1, 0);
CREATE TABLE {counter_seen} (event_id uuid NOT NULL, position bigint NOT NULL);
"""

DELAY_ENV = "MEMSAGA_TEST_COUNTER_DELAY"


async def count(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """n += 1 and one row per application: only the runner's dedup keeps this exactly once."""
    delay = float(os.environ.get(DELAY_ENV, "0"))
    if delay:
        await asyncio.sleep(delay)  # a slow handler (the result does not depend on it)
    await conn.execute(f"UPDATE {tables['counter']} SET n = n + 1 WHERE id = 1")
    await conn.execute(
        f"INSERT INTO {tables['counter_seen']} (event_id, position) VALUES ($1, $2)",
        event.event_id,
        event.position,
    )


COUNTER = Projection.declare(
    "counter",
    version=1,
    tables=("counter", "counter_seen"),
    ddl=COUNTER_DDL,
    handlers=dict.fromkeys(ALL_EVENTS, count),
)

# The counter's next code version: the same count, plus each event's type (a new column).
COUNTER_V2_DDL = """
CREATE TABLE {counter} (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO {counter} VALUES (1, 0);
CREATE TABLE {counter_seen} (event_id uuid NOT NULL, position bigint NOT NULL, event_type text NOT NULL);
"""

V2_DELAY_ENV = "MEMSAGA_TEST_COUNTER_V2_DELAY"


async def count_v2(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """:func:`count` with the event type; slowed by its own variable, so only builds of v2 slow down."""
    delay = float(os.environ.get(V2_DELAY_ENV, "0"))
    if delay:
        await asyncio.sleep(delay)
    await conn.execute(f"UPDATE {tables['counter']} SET n = n + 1 WHERE id = 1")
    await conn.execute(
        f"INSERT INTO {tables['counter_seen']} (event_id, position, event_type) VALUES ($1, $2, $3)",
        event.event_id,
        event.position,
        event.event_type,
    )


COUNTER_V2 = Projection.declare(
    "counter",
    version=2,
    tables=("counter", "counter_seen"),
    ddl=COUNTER_V2_DDL,
    handlers=dict.fromkeys(ALL_EVENTS, count_v2),
)

POISON_PREFIX = "POISON"

CHOOSY_DDL = "CREATE TABLE {choosy} (memory_id text PRIMARY KEY, text text NOT NULL);"


def _choosy(fail: bool) -> Handler:
    async def on_created(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
        p = payload_of(event, MemoryCreated)
        if fail and p.text.startswith(POISON_PREFIX):
            raise ValueError(f"cannot digest {p.text!r}")
        await conn.execute(f"INSERT INTO {tables['choosy']} VALUES ($1, $2)", p.memory_id, p.text)

    return on_created


CHOOSY = Projection.declare(
    "choosy", version=1, tables=("choosy",), ddl=CHOOSY_DDL, handlers={MemoryCreated: _choosy(fail=True)}
)
CHOOSY_FIXED = Projection.declare(
    "choosy", version=1, tables=("choosy",), ddl=CHOOSY_DDL, handlers={MemoryCreated: _choosy(fail=False)}
)
