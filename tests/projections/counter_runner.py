"""Runs the counter projection until killed (the kill test's runner process).

``python -m tests.projections.counter_runner DSN NATS_URL STREAM SUBJECT_PREFIX [CODE_VERSION]``

With code version 2 it runs :data:`COUNTER_V2`, building its version 5 events per transaction.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from eventstore import PostgresEventStore
from memsaga.bootstrap import build_registry
from projections import ProjectionRunner, RunnerConfig, connect_nats
from tests.projections.counter import COUNTER, COUNTER_V2

APPLICATION_NAME = "counter-runner"


async def main(dsn: str, nats_url: str, stream: str, prefix: str, code_version: str = "1") -> None:
    pool = await asyncpg.create_pool(dsn, server_settings={"application_name": APPLICATION_NAME})
    nc = await connect_nats(nats_url, name=APPLICATION_NAME)
    config = RunnerConfig(
        stream=stream,
        subject_prefix=prefix,
        batch_size=10,
        ack_wait=2.0,
        fetch_timeout=0.5,
        build_batch_size=5,
    )
    projection = COUNTER_V2 if code_version == "2" else COUNTER
    await ProjectionRunner(
        projection, PostgresEventStore(pool, build_registry()), nc.jetstream(), config
    ).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
