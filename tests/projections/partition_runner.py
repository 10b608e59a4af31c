"""Test projections for partitions, and a runner process of them (the kill test's).

``python -m tests.projections.partition_runner DSN NATS_URL STREAM SUBJECT_PREFIX PROJECTION PARTITIONS``
runs ``counter`` or ``ordered`` with that many partitions until killed, with the default leases.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from eventstore import PostgresEventStore, RecordedEvent
from eventstore.postgres import Connection
from memsaga.bootstrap import build_registry
from projections import ProjectionRunner, RunnerConfig, connect_nats
from projections.base import Projection, Tables
from sagas.memory_extraction.events import ALL_EVENTS
from tests.projections.counter import COUNTER

APPLICATION_NAME = "partition-runner"

ORDERED_DDL = """
CREATE TABLE {ordered} (seq bigserial PRIMARY KEY, user_id text, position bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE);
"""


async def record(conn: Connection, tables: Tables, event: RecordedEvent) -> None:
    """One row per application, numbered in the order of application (the serial)."""
    await conn.execute(
        f"INSERT INTO {tables['ordered']} (user_id, position, event_id) VALUES ($1, $2, $3)",
        event.user_id,
        event.position,
        event.event_id,
    )


ORDERED = Projection.declare(
    "ordered", version=1, tables=("ordered",), ddl=ORDERED_DDL, handlers=dict.fromkeys(ALL_EVENTS, record)
)
BY_NAME = {p.name: p for p in (COUNTER, ORDERED)}


async def main(dsn: str, nats_url: str, stream: str, prefix: str, name: str, partitions: str) -> None:
    pool = await asyncpg.create_pool(dsn, server_settings={"application_name": APPLICATION_NAME})
    nc = await connect_nats(nats_url, name=APPLICATION_NAME)
    config = RunnerConfig(
        stream=stream, subject_prefix=prefix, batch_size=10, ack_wait=3.0, fetch_timeout=0.5,
        partitions=int(partitions),
    )  # fmt: skip
    store = PostgresEventStore(pool, build_registry())
    await ProjectionRunner(BY_NAME[name], store, nc.jetstream(), config).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
