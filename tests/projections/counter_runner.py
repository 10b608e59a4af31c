"""Runs the counter projection until killed (the kill test's runner process).

``python -m tests.projections.counter_runner DSN NATS_URL STREAM SUBJECT_PREFIX``
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_registry
from projections import ProjectionRunner, RunnerConfig, connect_nats
from tests.projections.counter import COUNTER

APPLICATION_NAME = "counter-runner"


async def main(dsn: str, nats_url: str, stream: str, prefix: str) -> None:
    pool = await asyncpg.create_pool(dsn, server_settings={"application_name": APPLICATION_NAME})
    nc = await connect_nats(nats_url, name=APPLICATION_NAME)
    config = RunnerConfig(
        stream=stream, subject_prefix=prefix, batch_size=10, ack_wait=2.0, fetch_timeout=0.5
    )
    await ProjectionRunner(COUNTER, PostgresEventStore(pool, build_registry()), nc.jetstream(), config).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
