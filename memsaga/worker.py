"""The memsaga worker's run loop; :mod:`memsaga.bootstrap` builds what it runs.

``memsaga worker`` runs :func:`run_worker`: it connects to Temporal and PostgreSQL and polls
the task queue until told to stop, then stops gracefully (activities in flight get
:data:`~memsaga.bootstrap.GRACEFUL_SHUTDOWN` to finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from memsaga.bootstrap import build_activities, build_worker, check_adapters, create_pool
from memsaga.client import connect
from memsaga.settings import Settings


async def run_worker(
    settings: Settings, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Run a worker until ``stop`` is set; ``on_ready`` is called once it polls.

    :raises AdapterError: the configured extractor or embedder cannot work (checked first).
    """
    check_adapters(settings)
    client = await connect(settings)
    pool = await create_pool(settings)
    try:
        async with build_worker(client, build_activities(pool, settings), task_queue=settings.task_queue):
            if on_ready is not None:
                on_ready()
            await stop.wait()
    finally:
        await pool.close()
