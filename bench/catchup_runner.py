"""A projection runner process for the catch-up benchmark with several runners.

``python -m bench.catchup_runner DSN NATS_URL STREAM SUBJECT_PREFIX PARTITIONS``: prepares the
``memories`` runner (the active version must have PARTITIONS partitions already), registers it
among the live runners, prints ``ready``, waits for a line on stdin and then runs until SIGTERM.
Registering before the start lets runners started together split the partitions at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from memsaga.bootstrap import build_stores, create_pool
from memsaga.settings import Settings
from memsaga.telemetry import setup_tracing
from projections import MEMORIES, ProjectionRunner, RunnerConfig, connect_nats
from projections.partition_leases import PartitionLeases


async def main(dsn: str, nats_url: str, stream: str, prefix: str, partitions: str) -> None:
    setup_tracing("projector")  # as `memsaga project` does
    settings = Settings(database_url=dsn, nats_url=nats_url)
    pool = await create_pool(settings, min_size=2, max_size=10)
    store, _ = build_stores(pool, settings)
    nc = await connect_nats(nats_url, name="memsaga-bench-runner")
    config = RunnerConfig(stream=stream, subject_prefix=prefix, partitions=int(partitions))
    runner = ProjectionRunner(MEMORIES, store, nc.jetstream(), config)
    await runner.prepare()
    await PartitionLeases(pool, MEMORIES.name, int(partitions), runner_id=runner.runner_id).renew()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await runner.run(stop)
    await nc.close()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
